/**
 * What a broker sends a client (MQTT 3.1.1, section 3), written by hand so that anything can be
 * written: valid packets, and streams a hostile broker might send instead (mutated, random,
 * oversized or 5-byte lengths, reserved types, QoS 2 or 3, floods, a big PUBLISH a byte at a time).
 */
import { remainingLength } from "../../../device/mqtt/packets.ts";
import type { Prng } from "../prng.ts";

function packet(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first]), remainingLength(body.length), body]);
}

function u16(value: number): Buffer {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(value & 0xffff);
  return bytes;
}

export const connack = (returnCode = 0, sessionPresent = false): Buffer => Buffer.from([0x20, 0x02, sessionPresent ? 1 : 0, returnCode]);
export const suback = (packetId: number, granted: number[]): Buffer => packet(0x90, Buffer.concat([u16(packetId), Buffer.from(granted)]));
export const puback = (packetId: number): Buffer => packet(0x40, u16(packetId));
export const pingresp = (): Buffer => Buffer.from([0xd0, 0x00]);

export function publish(topic: string, payload: Buffer, options: { qos?: number; retain?: boolean; dup?: boolean; packetId?: number } = {}): Buffer {
  const qos = options.qos ?? 0;
  const first = 0x30 | (options.dup ? 8 : 0) | (qos << 1) | (options.retain ? 1 : 0);
  const name = Buffer.from(topic, "utf8");
  return packet(first, Buffer.concat([u16(name.length), name, qos > 0 ? u16(options.packetId ?? 1) : Buffer.alloc(0), payload]));
}

const COMMAND_TOPIC = "apt-ostree/devices/dev-1/cmd";

/** A few valid packets as a broker sends them after its CONNACK. */
function validSequence(prng: Prng, command: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let n = 1 + prng.int(5); n > 0; n--) {
    parts.push(
      prng.pick([
        () => suback(1 + prng.int(0xffff), [prng.pick([0, 1, 0x80])]),
        () => puback(1 + prng.int(0xffff)),
        () => pingresp(),
        () => publish(COMMAND_TOPIC, command, { qos: prng.int(2), packetId: 1 + prng.int(0xffff), retain: prng.chance(0.3) }),
        () => publish(COMMAND_TOPIC, prng.bytes(prng.int(200)), { qos: prng.int(2) }),
        () => Buffer.from([0xb0, 0x02, 0x00, 0x01]),
        () => Buffer.from([0x50, 0x02, 0x00, 0x01]),
      ])(),
    );
  }
  return Buffer.concat(parts);
}

export const STREAM_KINDS = ["valid", "mutated", "random", "oversized", "five-byte-length", "reserved-type", "qos2", "qos3", "ping-flood", "byte-at-a-time", "big-publish", "truncated-string"] as const;
export type StreamKind = (typeof STREAM_KINDS)[number];

/** A stream a broker might send after its CONNACK; `command` is a valid signed command to carry. */
export function brokerStream(prng: Prng, command: Buffer, kind: StreamKind = prng.pick(STREAM_KINDS)): { how: StreamKind; bytes: Buffer } {
  const bytes = ((): Buffer => {
    switch (kind) {
      case "valid":
        return validSequence(prng, command);
      case "mutated":
        return prng.mutate(validSequence(prng, command));
      case "random":
        return prng.bytes(1 + prng.int(2048));
      case "oversized":
        // Declares far more than the agent takes; the body never comes.
        return Buffer.concat([Buffer.from([0x30]), remainingLength(prng.pick([70 * 1024, 4 * 2 ** 20, 268_435_455])), prng.bytes(prng.int(1024))]);
      case "five-byte-length":
        return Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00]);
      case "reserved-type":
        return Buffer.from([prng.pick([0x00, 0xf0, 0x10, 0x80, 0xa2, 0xc0, 0xe0]), 0x00]);
      case "qos2":
        return publish(COMMAND_TOPIC, command, { qos: 2, packetId: 7 });
      case "qos3":
        return Buffer.concat([Buffer.from([0x36]), remainingLength(4), Buffer.from([0, 1, 0x61, 0])]);
      case "ping-flood":
        return Buffer.concat(Array.from({ length: 5000 }, pingresp));
      case "byte-at-a-time":
      case "big-publish":
        // Just under the agent's limit: the largest packet it must take, in any cut.
        return publish(COMMAND_TOPIC, Buffer.concat([command, Buffer.alloc(64 * 1024 - command.length - 100, 0x20)]), { qos: 1, packetId: 9 });
      case "truncated-string":
        return Buffer.from([0x30, 0x04, 0x00, 0x09, 0x61, 0x62]);
    }
  })();
  return { how: kind, bytes };
}
