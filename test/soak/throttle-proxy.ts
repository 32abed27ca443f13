/**
 * A TCP proxy that slows what the server sends to a device down to a chosen rate (per
 * connection), as a thin uplink does, and counts the bytes it delivered: long enough downloads to
 * cut the network or fill the disk in the middle of, and a measure of what was fetched twice.
 * TLS passes through untouched.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";

export class ThrottleProxy {
  /** Bytes delivered from the server to clients, all connections together. */
  bytesToClients = 0;
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  static async start(options: { listenPort: number; targetPort: number; bytesPerSecond: number; host?: string }): Promise<ThrottleProxy> {
    const host = options.host ?? "127.0.0.1";
    let proxy: ThrottleProxy;
    const server = createServer((client) => {
      const upstream = createConnection({ host, port: options.targetPort });
      for (const socket of [client, upstream]) {
        proxy.sockets.add(socket);
        socket.once("close", () => proxy.sockets.delete(socket));
        socket.on("error", () => undefined);
      }
      client.pipe(upstream);
      upstream.on("data", (chunk: Buffer) => {
        proxy.bytesToClients += chunk.length;
        const drained = client.write(chunk);
        // Hold the next chunk back for as long as this one takes at the chosen rate, and until the
        // client's socket took it (a client that stops reading, a cut link, stops the upstream).
        upstream.pause();
        const rate = new Promise((resolve) => setTimeout(resolve, (chunk.length / options.bytesPerSecond) * 1000));
        const drain = drained ? Promise.resolve() : new Promise((resolve) => client.once("drain", resolve).once("close", resolve));
        void Promise.all([rate, drain]).then(() => upstream.resume());
      });
      upstream.once("end", () => client.end());
      client.once("close", () => upstream.destroy());
      upstream.once("close", () => client.destroy());
    });
    proxy = new ThrottleProxy(server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.listenPort, host, resolve);
    });
    return proxy;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
