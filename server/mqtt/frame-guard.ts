/**
 * A byte-level guard in front of the broker's MQTT parser. mqtt-packet buffers a packet until
 * its last byte arrives, whatever the length its header declares, so a stranger could make the
 * broker hold 64 MiB before sending CONNECT. The guard reads only the fixed headers (MQTT 3.1.1
 * section 2.2: a type byte, then the Remaining Length in at most four 7-bit bytes) and cuts the
 * connection as soon as a header declares a packet above the limit, before its body is held.
 */
import { Duplex, Transform, pipeline, type TransformCallback } from "node:stream";

export class PacketTooLargeError extends Error {
  readonly declared: number;
  constructor(declared: number, limit: number) {
    super(`packet of ${declared} bytes declared; the limit is ${limit}`);
    this.declared = declared;
  }
}

export class MalformedLengthError extends Error {
  constructor() {
    super("packet length takes more than four bytes [MQTT-2.2.3]");
  }
}

/** Follows packet boundaries in a byte stream; `push` returns an error at the first bad header. */
export class FrameScanner {
  private state: "type" | "length" | "body" = "type";
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private remaining = 0;

  constructor(private readonly maxPacketBytes: number) {}

  push(chunk: Uint8Array): Error | null {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === "body") {
        const take = Math.min(this.remaining, chunk.length - i);
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) this.state = "type";
      } else if (this.state === "type") {
        i++;
        this.state = "length";
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
      } else {
        const byte = chunk[i++]!;
        this.length += (byte & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        this.lengthBytes++;
        const total = 1 + this.lengthBytes + this.length;
        if (total > this.maxPacketBytes) return new PacketTooLargeError(total, this.maxPacketBytes);
        if (byte & 0x80) {
          if (this.lengthBytes === 4) return new MalformedLengthError();
          continue;
        }
        this.remaining = this.length;
        this.state = this.remaining > 0 ? "body" : "type";
      }
    }
    return null;
  }
}

export interface GuardOptions {
  maxPacketBytes: number;
  /** Called once when the connection is cut, with the reason. */
  onViolation: (error: Error) => void;
}

/**
 * The connection as the broker should see it: reads pass through the guard, writes go straight
 * to the connection. A violation destroys the underlying connection.
 */
export function guardConnection(connection: Duplex, options: GuardOptions): Duplex {
  const scanner = new FrameScanner(options.maxPacketBytes);
  const guard = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      const violation = scanner.push(chunk);
      if (violation) {
        options.onViolation(violation);
        return callback(violation);
      }
      callback(null, chunk);
    },
  });
  // pipeline destroys the connection when the guard fails, and the guard when the connection does.
  pipeline(connection, guard, () => undefined);
  const guarded = Duplex.from({ readable: guard, writable: connection });
  guarded.on("close", () => connection.destroy());
  // The composite only ends its readable side when the peer closes: without this it never emits
  // 'close', and mqtt.js (the server's link to an external broker) never notices nor reconnects.
  connection.on("close", () => guarded.destroy());
  return guarded;
}
