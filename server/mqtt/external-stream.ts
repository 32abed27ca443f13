/**
 * The connection to an external broker, behind the same packet-size guard as the embedded
 * broker's clients (`frame-guard.ts`): mqtt.js buffers a packet whole, whatever length its
 * header declares (a hostile broker made the server hold 250 MiB), so what a broker sends the
 * server is cut at the header as what a device sends is. mqtt://, mqtts:// and ws(s):// URLs.
 */
import { connect as connectTcp, isIP } from "node:net";
import { connect as connectTls } from "node:tls";
import type { Duplex } from "node:stream";
import { WebSocket, createWebSocketStream } from "ws";
import { guardConnection } from "./frame-guard.ts";
import type { BrokerTls } from "./external-identity.ts";

export interface BrokerEndpoint {
  protocol: "tcp" | "tls" | "ws";
  host: string;
  port: number;
  /** For ws(s):// the whole URL without credentials. */
  url: string;
  username?: string;
  password?: string;
}

/** Pure: where the URL points and with which credentials. */
export function parseBrokerUrl(text: string): BrokerEndpoint {
  const url = new URL(text);
  const scheme = url.protocol.replace(/:$/, "");
  const protocol = scheme === "mqtt" || scheme === "tcp" ? "tcp" : scheme === "mqtts" ? "tls" : scheme === "ws" || scheme === "wss" ? "ws" : null;
  if (protocol === null) throw new RangeError(`broker URL scheme '${scheme}' is not mqtt, mqtts, ws or wss`);
  const defaultPort = { tcp: 1883, tls: 8883, ws: scheme === "wss" ? 443 : 80 }[protocol];
  const credentials = { username: url.username ? decodeURIComponent(url.username) : undefined, password: url.password ? decodeURIComponent(url.password) : undefined };
  url.username = "";
  url.password = "";
  return { protocol, host: url.hostname.replace(/^\[|\]$/g, ""), port: url.port ? Number(url.port) : defaultPort, url: url.toString(), ...credentials };
}

/**
 * A new guarded connection to the broker, for mqtt.js's stream builder (called again on each
 * reconnect). `tls`: the CA the broker must chain to (only it is trusted) and the server's client
 * certificate, for mqtts:// and wss://; absent: Node's CAs, no client certificate.
 */
export function openBrokerStream(endpoint: BrokerEndpoint, maxPacketBytes: number, onViolation: (error: Error) => void, tls?: BrokerTls): Duplex {
  const raw: Duplex =
    endpoint.protocol === "tcp" ? connectTcp(endpoint.port, endpoint.host)
    : endpoint.protocol === "tls" ? connectTls({ host: endpoint.host, port: endpoint.port, ...(isIP(endpoint.host) ? {} : { servername: endpoint.host }), ...tls })
    : createWebSocketStream(new WebSocket(endpoint.url, "mqtt", { maxPayload: maxPacketBytes, ...tls }));
  return guardConnection(raw, { maxPacketBytes, onViolation });
}
