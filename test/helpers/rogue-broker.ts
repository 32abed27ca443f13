/**
 * An attacker's broker for end-to-end tests: aedes over TLS with the server's own certificate (the
 * worst case, a server taken over), accepting any client and holding retained messages it was
 * given, so a device that reconnects receives whatever the attacker signed.
 */
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:tls";
import aedesModule from "aedes";

type Aedes = ReturnType<typeof aedesModule.createBroker>;

export interface RogueBroker {
  /** Topics clients subscribed to, in order. */
  subscriptions: string[];
  /** Client ids that connected. */
  clients: string[];
  /** Publishes a retained message (QoS 1), delivered to current and future subscribers. */
  retain(topic: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

export async function startRogueBroker(options: { host: string; port: number; certFile: string; keyFile: string }): Promise<RogueBroker> {
  const broker: Aedes = aedesModule.createBroker();
  const subscriptions: string[] = [];
  const clients: string[] = [];
  broker.on("client", (client) => clients.push(client.id));
  broker.on("subscribe", (subs) => subscriptions.push(...subs.map((s) => s.topic)));
  const server: Server = createServer({ cert: await readFile(options.certFile), key: await readFile(options.keyFile) }, broker.handle);
  const sockets = new Set<import("node:net").Socket>();
  server.on("secureConnection", (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.listen(options.port, options.host);
  await once(server, "listening");
  return {
    subscriptions,
    clients,
    retain: (topic, payload) =>
      new Promise((resolve, reject) =>
        broker.publish({ cmd: "publish", topic, payload: Buffer.from(payload), qos: 1, retain: true, dup: false }, (error) => (error ? reject(error) : resolve())),
      ),
    close: async () => {
      const closed = once(server, "close");
      server.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await closed;
    },
  };
}
