/**
 * TLS on serve's listeners: HTTPS and WSS through node:https, MQTT over TLS by wrapping each
 * accepted TCP socket, so the broker's connection limits count a connection before its handshake
 * and its packet-size guard reads the decrypted stream. A client that fails the handshake (plain
 * text on a TLS port, an unknown CA, a protocol mismatch) is cut, counted and logged at debug:
 * strangers can produce any number of them.
 */
import type { Socket } from "node:net";
import { createSecureContext, TLSSocket, type SecureContext } from "node:tls";
import type { Logger } from "../../shared/log.ts";
import type { Metrics } from "../http/metrics.ts";

/** The server's certificate chain and private key, PEM. */
export interface TlsCredentials {
  cert: string;
  key: string;
}

/** Counts and logs one failed handshake on `listener` (http, mqtt, mqtt-ws). */
export type HandshakeFailed = (listener: string, address: string, error: Error) => void;

export function handshakeFailureCounter(metrics: Metrics, log: Logger): HandshakeFailed {
  const failures = metrics.counter("aptostree_tls_handshake_failures_total", "TLS handshakes that failed (a plain-text client on a TLS port, a client that does not trust the CA), by listener");
  return (listener, address, error) => {
    failures(1, { listener });
    log.debug({ event: "tls.handshake.failed", listener, address, reason: error.message }, `TLS handshake from ${address} on ${listener} failed: ${error.message}`);
  };
}

export function secureContext(credentials: TlsCredentials): SecureContext {
  return createSecureContext({ cert: credentials.cert, key: credentials.key });
}

/**
 * The decrypted stream of an accepted TCP socket (server side). A handshake failure is reported
 * once and ends the socket; a timeout is the reader's (the broker's CONNECT timeout).
 */
export function acceptTls(socket: Socket, context: SecureContext, onFailure: (error: Error) => void): TLSSocket {
  const secure = new TLSSocket(socket, { isServer: true, secureContext: context, requestCert: false });
  let established = false;
  secure.once("secure", () => (established = true));
  // Also keeps an error after the handshake (a reset) from being thrown as unhandled.
  secure.on("error", (error) => {
    if (!established) onFailure(error);
    secure.destroy();
  });
  secure.once("close", () => socket.destroy());
  return secure;
}
