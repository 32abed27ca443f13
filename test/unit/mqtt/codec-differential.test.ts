/**
 * Differential fuzzing of the device's MQTT 3.1.1 codec (device/mqtt/packets.ts) against
 * mqtt-packet, the codec of mqtt.js and aedes, as the reference (issue 18, finding 10).
 *
 * Decoder: byte streams of packets a broker sends, made by mqtt-packet's generate, cut at random
 * chunk boundaries, whole or mutated (bits flipped, bytes changed, inserted, deleted, truncated,
 * huge or 5-byte lengths), go to both parsers. Up to the first refusal both must give the same
 * packets (the fields the device uses); where one refuses, the other refuses too, or the
 * difference is one of DELIBERATE_DIFFERENCES below.
 * Encoder: what the device sends must parse in mqtt-packet to the same fields.
 *
 * Deterministic: APT_OSTREE_FUZZ_SEED (default 0x1810) seeds the generator and
 * APT_OSTREE_FUZZ_ITERATIONS (default 20000, ~3 s on these machines) sets the streams per run. A failure
 * names the seed, the iteration and the byte stream in hex with its chunk sizes: keep it in
 * KEPT_CASES.
 */
import mqttPacket from "mqtt-packet";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_MAX_PACKET_BYTES, DISCONNECT, encodeConnect, encodePuback, encodePublish, encodeSubscribe, MqttPacketTooLargeError, MqttProtocolError, PacketReader, PINGREQ,
  type ConnectPacket, type IncomingPacket,
} from "../../../device/mqtt/packets.ts";

const SEED = Number(process.env.APT_OSTREE_FUZZ_SEED ?? 0x1810);
const ITERATIONS = Number(process.env.APT_OSTREE_FUZZ_ITERATIONS ?? 20000);
if (!Number.isInteger(SEED) || SEED < 0 || SEED >= 2 ** 32) throw new Error(`APT_OSTREE_FUZZ_SEED must be an integer in [0, 2^32), not ${process.env.APT_OSTREE_FUZZ_SEED}`);
if (!Number.isInteger(ITERATIONS) || ITERATIONS < 1) throw new Error(`APT_OSTREE_FUZZ_ITERATIONS must be a positive integer, not ${process.env.APT_OSTREE_FUZZ_ITERATIONS}`);

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: small, fast, and the same sequence on every Node. */
function random(seed: number) {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    int,
    bool: (p = 0.5): boolean => next() < p,
    pick: <T>(items: readonly T[]): T => items[int(items.length)]!,
    bytes: (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256))),
  };
}
type Random = ReturnType<typeof random>;

/** The seed of iteration `i`, so one stream can be made again without the ones before it. */
const iterationSeed = (seed: number, i: number) => (seed ^ Math.imul(i + 1, 0x9e3779b9)) >>> 0;

const CHARS = ["a", "b", "z", "0", "9", "/", "-", "_", ".", "$", "+", "#", " ", "é", "ß", "漢", "😀", "\u0000"];
function randomText(r: Random, max: number): string {
  return Array.from({ length: r.int(max + 1) }, () => r.pick(CHARS)).join("");
}

function randomPayload(r: Random): Buffer {
  const size = r.pick([0, 1, 2, 16, 100]) + (r.bool(0.1) ? r.int(3000) : r.int(40));
  return r.bytes(size);
}

// ---------------------------------------------------------------------------------------------
// What a broker sends, made by the reference

const generate = (packet: Record<string, unknown>): Buffer => mqttPacket.generate(packet as unknown as mqttPacket.Packet, { protocolVersion: 4 });

function randomBrokerPacket(r: Random): Buffer {
  const messageId = r.bool(0.05) ? r.pick([0, 65535]) : r.int(65536);
  switch (r.int(12)) {
    case 0:
      return generate({ cmd: "connack", returnCode: r.int(6), sessionPresent: r.bool() });
    case 1:
    case 2:
    case 3: {
      const qos = r.pick([0, 0, 1, 1, 2]);
      return generate({ cmd: "publish", topic: randomText(r, 30) || "t", payload: randomPayload(r), qos, retain: r.bool(), dup: r.bool(0.2), ...(qos > 0 ? { messageId } : {}) });
    }
    case 4:
      return generate({ cmd: "puback", messageId });
    case 5:
      return generate({ cmd: "suback", messageId, granted: Array.from({ length: 1 + r.int(4) }, () => r.pick([0, 1, 2, 128])) });
    case 6:
      return generate({ cmd: "pingresp" });
    case 7:
      return generate({ cmd: r.pick(["unsuback", "pubrec", "pubrel", "pubcomp"]), messageId });
    case 8:
      // What only a client sends: the device must never take it from a broker.
      switch (r.int(5)) {
        case 0:
          return generate({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId: randomText(r, 10), clean: true, keepalive: 60 });
        case 1:
          return generate({ cmd: "subscribe", messageId: messageId || 1, subscriptions: [{ topic: "a/#", qos: 1 }] });
        case 2:
          return generate({ cmd: "unsubscribe", messageId: messageId || 1, unsubscriptions: ["a/#"] });
        case 3:
          return generate({ cmd: "pingreq" });
        default:
          return generate({ cmd: "disconnect" });
      }
    default:
      // A small PUBLISH, the commonest packet on the device's link.
      return generate({ cmd: "publish", topic: "apt-ostree/devices/dev-1/cmd", payload: r.bytes(r.int(64)), qos: 1, retain: r.bool(), dup: false, messageId: messageId || 1 });
  }
}

/** The codec's encoder refuses lengths past the spec's maximum; the mutations need to write them. */
function remainingLengthBytes(length: number): number[] {
  const bytes: number[] = [];
  do {
    let digit = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) digit |= 0x80;
    bytes.push(digit);
  } while (length > 0);
  return bytes;
}

function mutate(r: Random, stream: Buffer, limit: number): Buffer {
  const at = () => r.int(stream.length + 1);
  switch (r.int(10)) {
    case 0: {
      const copy = Buffer.from(stream);
      const i = r.int(copy.length);
      copy[i] = copy[i]! ^ (1 << r.int(8));
      return copy;
    }
    case 1: {
      const copy = Buffer.from(stream);
      copy[r.int(copy.length)] = r.int(256);
      return copy;
    }
    case 2:
      return stream.subarray(0, r.int(stream.length));
    case 3: {
      const i = at();
      return Buffer.concat([stream.subarray(0, i), r.bytes(1 + r.int(8)), stream.subarray(i)]);
    }
    case 4: {
      const i = r.int(stream.length);
      return Buffer.concat([stream.subarray(0, i), stream.subarray(i + 1 + r.int(8))]);
    }
    case 5: {
      // A frame's first byte: another type, or other flags.
      const frame = r.pick(frames(stream));
      const copy = Buffer.from(stream);
      copy[frame.offset] = r.bool() ? (r.int(16) << 4) | (copy[frame.offset]! & 0x0f) : (copy[frame.offset]! & 0xf0) | r.int(16);
      return copy;
    }
    case 6: {
      // A frame's Remaining Length replaced: huge, just over the limit, 5 bytes long, or off by a little.
      const frame = r.pick(frames(stream));
      const lengthBytes = frame.headerLength - 1;
      const declared = r.pick([2 ** 20, 268_435_455, limit + 1, -1, Math.max(0, (frame.length ?? 0) + r.int(7) - 3)]);
      const encoded = declared === -1 ? [0xff, 0xff, 0xff, 0xff, 0x01] : remainingLengthBytes(declared);
      return Buffer.concat([stream.subarray(0, frame.offset + 1), Buffer.from(encoded), stream.subarray(frame.offset + 1 + lengthBytes)]);
    }
    case 7: {
      // A whole frame made shorter, the stream still framed: a QoS 1 or 2 PUBLISH cut right after its topic.
      const frame = r.pick(frames(stream));
      if (frame.body === null) return Buffer.concat([stream, r.bytes(1 + r.int(6))]);
      const isPublish = frame.first >> 4 === 3 && frame.body.length >= 2;
      const length = isPublish ? Math.min(frame.body.length, 2 + frame.body.readUInt16BE(0) + r.int(2)) : r.int(frame.body.length + 1);
      const first = isPublish && ((frame.first >> 1) & 3) === 0 ? frame.first | 0x02 : frame.first;
      const end = frame.offset + frame.headerLength + frame.body.length;
      return Buffer.concat([stream.subarray(0, frame.offset), Buffer.from([first, ...remainingLengthBytes(length)]), frame.body.subarray(0, length), stream.subarray(end)]);
    }
    case 8:
      return Buffer.concat([stream, r.bytes(1 + r.int(6))]);
    default:
      return Buffer.concat([stream.subarray(0, at()), Buffer.from([r.int(256), 0xff, 0xff, 0xff, 0xff])]);
  }
}

function chunked(r: Random, stream: Buffer): number[] {
  if (stream.length === 0) return [];
  const mode = r.int(4);
  if (mode === 0) return [stream.length];
  if (mode === 1 && stream.length <= 2048) return Array.from({ length: stream.length }, () => 1);
  const sizes: number[] = [];
  const most = mode === 2 ? 8 : 512;
  for (let left = stream.length; left > 0; ) {
    const size = Math.min(left, 1 + r.int(most));
    sizes.push(size);
    left -= size;
  }
  return sizes;
}

// ---------------------------------------------------------------------------------------------
// Framing, as the test reads it (independent of both parsers)

interface Frame {
  offset: number;
  first: number;
  /** Bytes of the fixed header read so far (type byte and length bytes). */
  headerLength: number;
  /** The Remaining Length; null when the stream ends inside it or it is longer than 4 bytes. */
  length: number | null;
  /** 4 length bytes, each saying that another follows (2.2.3: at most 4). */
  malformedLength: boolean;
  /** The packet's body; null when the stream ends first. */
  body: Buffer | null;
}

function frames(stream: Buffer): Frame[] {
  const found: Frame[] = [];
  for (let at = 0; at < stream.length; ) {
    const first = stream[at]!;
    let length = 0;
    let i = 1;
    let done = false;
    for (; i <= 4 && at + i < stream.length; i++) {
      const digit = stream[at + i]!;
      length += (digit & 0x7f) * 128 ** (i - 1);
      if ((digit & 0x80) === 0) {
        done = true;
        break;
      }
    }
    if (!done) {
      found.push({ offset: at, first, headerLength: i, length: null, malformedLength: i === 5, body: null });
      break;
    }
    const start = at + i + 1;
    const whole = start + length <= stream.length;
    found.push({ offset: at, first, headerLength: i + 1, length, malformedLength: false, body: whole ? stream.subarray(start, start + length) : null });
    if (!whole) break;
    at = start + length;
  }
  return found;
}

const TYPE = { connack: 2, publish: 3, puback: 4, pubrec: 5, pubrel: 6, pubcomp: 7, suback: 9, unsuback: 11, pingresp: 13 } as const;

/**
 * Where the device refuses a packet on purpose and mqtt-packet takes it. Each is checked on the
 * frame the device refused; every other refusal must be mqtt-packet's too.
 */
const DELIBERATE_DIFFERENCES: ReadonlyArray<{ key: string; name: string; code?: string; applies: (frame: Frame, limit: number) => boolean }> = [
  {
    // mqtt-packet parses CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and DISCONNECT from anyone,
    // and refuses types 0 and 15 only once their body is in.
    key: "not-from-a-server",
    name: "a packet type a server never sends a client (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT) or a reserved type (0, 15): refused at its first byte",
    applies: (frame) => [0, 1, 8, 10, 12, 14, 15].includes(frame.first >> 4),
  },
  {
    key: "over-the-limit",
    name: "a declared Remaining Length over the device's limit: refused as soon as the length is read, the body never buffered (mqtt-packet buffers any length up to 256 MiB)",
    code: "E_MQTT_PACKET_TOO_LARGE",
    applies: (frame, limit) => frame.length !== null && frame.length > limit,
  },
  {
    // mqtt-packet ignores the extra bytes, and reads missing ones from the next packet (or
    // makes a packet id of -1).
    key: "fixed-size-mismatch",
    name: "a fixed-size packet whose Remaining Length is not the spec's: 2 for CONNACK (3.2.1), PUBACK, PUBREC, PUBREL, PUBCOMP (3.4.1-3.7.1) and UNSUBACK (3.11.1), 0 for PINGRESP (3.13.1), at least 3 for SUBACK (3.9: a packet id and a return code)",
    applies: (frame) => {
      if (frame.length === null) return false;
      const type = frame.first >> 4;
      if (type === TYPE.suback) return frame.length < 3;
      if (type === TYPE.pingresp) return frame.length !== 0;
      return [TYPE.connack, TYPE.puback, TYPE.pubrec, TYPE.pubrel, TYPE.pubcomp, TYPE.unsuback].some((t) => t === type) && frame.length !== 2;
    },
  },
  {
    // mqtt-packet reads the packet id from the bytes after the packet, or makes it -1.
    key: "publish-without-packet-id",
    name: "a QoS 1 or 2 PUBLISH with no room for its packet id after the topic (3.3.2.2)",
    applies: (frame) => {
      if (frame.first >> 4 !== TYPE.publish || ((frame.first >> 1) & 3) === 0 || frame.body === null || frame.body.length < 2) return false;
      const afterTopic = 2 + frame.body.readUInt16BE(0);
      return afterTopic <= frame.body.length && frame.body.length - afterTopic < 2;
    },
  },
];

/** Packet types the device reads for their form only and does not hand on: it never asks for what they answer. */
const IGNORED = new Set(["unsuback", "pubrec", "pubrel", "pubcomp"]);

// ---------------------------------------------------------------------------------------------
// Both parsers on one stream

interface Fields {
  cmd: string;
  topic?: string;
  payload?: string;
  qos?: number;
  retain?: boolean;
  dup?: boolean;
  messageId?: number | null;
  returnCode?: number;
  sessionPresent?: boolean;
  granted?: number[];
}

function fieldsOfReference(packet: mqttPacket.Packet): Fields {
  const p = packet as unknown as Record<string, unknown> & { cmd: string };
  switch (p.cmd) {
    case "connack":
      return { cmd: p.cmd, sessionPresent: p.sessionPresent as boolean, returnCode: p.returnCode as number };
    case "publish":
      return {
        cmd: p.cmd, topic: p.topic as string, payload: Buffer.from(p.payload as Buffer).toString("hex"), qos: p.qos as number, retain: p.retain as boolean, dup: p.dup as boolean,
        messageId: (p.qos as number) > 0 ? (p.messageId as number) : null,
      };
    case "puback":
      return { cmd: p.cmd, messageId: p.messageId as number };
    case "suback":
      return { cmd: p.cmd, messageId: p.messageId as number, granted: [...(p.granted as number[])] };
    default:
      return { cmd: p.cmd };
  }
}

function fieldsOfOurs(packet: IncomingPacket): Fields {
  switch (packet.type) {
    case "connack":
      return { cmd: "connack", sessionPresent: packet.sessionPresent, returnCode: packet.returnCode };
    case "publish":
      return { cmd: "publish", topic: packet.topic, payload: Buffer.from(packet.payload).toString("hex"), qos: packet.qos, retain: packet.retain, dup: packet.dup, messageId: packet.packetId };
    case "puback":
      return { cmd: "puback", messageId: packet.packetId };
    case "suback":
      return { cmd: "suback", messageId: packet.packetId, granted: [...packet.granted] };
    default:
      return { cmd: packet.type };
  }
}

interface Outcome {
  packets: Fields[];
  refused: Error | null;
}

function runReference(stream: Buffer, chunks: number[]): Outcome & { incomplete: boolean } {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: Fields[] = [];
  let refused: Error | null = null;
  parser.on("packet", (packet) => packets.push(fieldsOfReference(packet)));
  parser.on("error", (error) => (refused ??= error));
  let at = 0;
  for (const size of chunks) {
    parser.parse(stream.subarray(at, at + size));
    at += size;
    if (refused) break;
  }
  const state = parser as unknown as { _list: { length: number }; _stateCounter: number };
  return { packets, refused, incomplete: state._list.length > 0 || state._stateCounter !== 0 };
}

function runOurs(stream: Buffer, chunks: number[], limit: number): Outcome {
  const reader = new PacketReader(limit);
  const packets: Fields[] = [];
  let at = 0;
  try {
    for (const size of chunks) {
      reader.push(stream.subarray(at, at + size), (packet) => packets.push(fieldsOfOurs(packet)));
      at += size;
    }
  } catch (error) {
    return { packets, refused: error as Error };
  }
  return { packets, refused: null };
}

/** How a stream ended: alike, both waiting for more, both refusing, or a deliberate difference's key. */
type Verdict = "same" | "incomplete" | "both refuse" | (typeof DELIBERATE_DIFFERENCES)[number]["key"];

/** Runs both parsers and checks that they agree as the header says; returns how they ended. */
function differential(stream: Buffer, chunks: number[], limit: number): Verdict {
  const theirs = runReference(stream, chunks);
  const ours = runOurs(stream, chunks, limit);
  const say = (what: string) => `${what}\n  ours: ${ours.packets.length} packets, ${ours.refused ? `refused: ${ours.refused.message}` : "no refusal"}\n  mqtt-packet: ${theirs.packets.length} packets, ${theirs.refused ? `refused: ${theirs.refused.message}` : theirs.incomplete ? "waiting for more" : "no refusal"}`;
  const oursRefusedAfter = (count: number, why: string) => {
    if (!ours.refused) throw new Error(say(`the device should refuse packet ${count} (${why})`));
    if (!(ours.refused instanceof MqttProtocolError)) throw new Error(say(`the device's refusal is not an MqttProtocolError: ${ours.refused.stack}`));
    if (ours.packets.length !== count) throw new Error(say(`the device refused after ${ours.packets.length} packets, not ${count}`));
  };

  let mine = 0;
  for (const [i, frame] of frames(stream).entries()) {
    if (theirs.packets.length === i && theirs.refused) {
      oursRefusedAfter(mine, `mqtt-packet refuses it: ${theirs.refused.message}`);
      return "both refuse";
    }
    const deliberate = DELIBERATE_DIFFERENCES.find((d) => d.applies(frame, limit));
    if (deliberate) {
      oursRefusedAfter(mine, deliberate.name);
      if (deliberate.code) expect((ours.refused as MqttProtocolError).code, say("the refusal's code")).toBe(deliberate.code);
      return deliberate.key;
    }
    if (frame.body === null) {
      if (frame.malformedLength) throw new Error(say(`mqtt-packet did not refuse a 5-byte Remaining Length at frame ${i}`));
      if (!theirs.incomplete || theirs.packets.length !== i) throw new Error(say(`mqtt-packet should be waiting for the rest of frame ${i}`));
      if (ours.refused) throw new Error(say(`the device refused an incomplete frame ${i} that nothing says is bad`));
      expect(ours.packets.length, say("packets before the incomplete frame")).toBe(mine);
      return "incomplete";
    }
    const reference = theirs.packets[i];
    if (!reference) throw new Error(say(`mqtt-packet neither parsed nor refused the whole frame ${i}`));
    if (IGNORED.has(reference.cmd)) continue;
    const own = ours.packets[mine];
    if (!own) throw new Error(say(`the device refused frame ${i} (${reference.cmd}), which mqtt-packet takes and no deliberate difference covers`));
    expect(own, say(`frame ${i}`)).toEqual(reference);
    mine++;
  }
  if (theirs.refused) throw new Error(say("mqtt-packet refused after the last frame"));
  if (ours.refused) throw new Error(say("the device refused a stream of whole, good packets"));
  expect(ours.packets.length, say("packet count")).toBe(mine);
  return "same";
}

function failureReport(seed: number, iteration: number, stream: Buffer, chunks: number[], limit: number, error: Error): Error {
  const hex = stream.length <= 16_384 ? stream.toString("hex") : `${stream.subarray(0, 16_384).toString("hex")}… (${stream.length} bytes)`;
  const report = [
    `differential failure: APT_OSTREE_FUZZ_SEED=${seed} iteration ${iteration} (its own seed ${iterationSeed(seed, iteration)})`,
    `keep it in KEPT_CASES: { name: "…", hex: "${hex}", chunks: [${chunks.join(", ")}], limit: ${limit} }`,
    error.message,
  ].join("\n");
  console.error(report);
  return new Error(report, { cause: error });
}

/**
 * Byte streams kept from fuzzing and from reading mqtt-packet's parser, each with the verdict it
 * must keep. `chunks` are the sizes the stream is fed in (default: whole).
 */
const KEPT_CASES: Array<{ name: string; hex: string; chunks?: number[]; limit?: number; verdict: Verdict }> = [
  { name: "CONNACK, PUBLISH QoS 1 retained, PINGRESP", hex: "20020100" + "33090003612f6200076869" + "d000", verdict: "same" },
  { name: "PUBACK with Remaining Length 0 before a PINGRESP: mqtt-packet takes the PINGRESP's bytes as the packet id", hex: "4000d000", verdict: "fixed-size-mismatch" },
  { name: "PUBACK with 3 bytes: mqtt-packet ignores the third", hex: "4003000101", verdict: "fixed-size-mismatch" },
  { name: "PINGRESP with a body", hex: "d00100", verdict: "fixed-size-mismatch" },
  { name: "CONNACK with 3 bytes", hex: "2003000000", verdict: "fixed-size-mismatch" },
  { name: "SUBACK without a return code", hex: "90020001", verdict: "fixed-size-mismatch" },
  { name: "SUBACK granting QoS 3 (3.9.3: 0, 1, 2 or 0x80)", hex: "9003000103", verdict: "both refuse" },
  { name: "CONNACK with reserved acknowledge flags (3.2.2.1)", hex: "20020200", verdict: "both refuse" },
  { name: "QoS 1 PUBLISH whose topic fills the packet: no packet id", hex: "32030001" + "61" + "d000", verdict: "publish-without-packet-id" },
  { name: "PUBLISH whose topic length runs past the packet's end", hex: "3004" + "00ff6162", verdict: "both refuse" },
  { name: "PUBLISH with QoS 3", hex: "36", verdict: "both refuse" },
  { name: "PUBREL with flags 0 (2.2.2: must be 2)", hex: "60020001", verdict: "both refuse" },
  { name: "PUBACK with flags 1", hex: "41020001", verdict: "both refuse" },
  { name: "a 5-byte Remaining Length", hex: "30ffffffff01", chunks: [1, 1, 1, 1, 1, 1], verdict: "both refuse" },
  { name: "a 1 MiB PUBLISH header, nothing more", hex: "30808040", verdict: "over-the-limit" },
  { name: "a CONNECT from the broker", hex: generate({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId: "x", clean: true, keepalive: 1 }).toString("hex"), verdict: "not-from-a-server" },
  { name: "a DISCONNECT from the broker (a server does not send one in 3.1.1)", hex: "e000", verdict: "not-from-a-server" },
  { name: "reserved type 0, only its first byte in", hex: "00", verdict: "not-from-a-server" },
  { name: "UNSUBACK, PUBREC, PUBREL, PUBCOMP: well formed, read and not handed on", hex: "b0020001" + "50020002" + "62020003" + "70020004" + "d000", verdict: "same" },
  { name: "a packet cut inside its body", hex: "3005000161", chunks: [2, 3], verdict: "incomplete" },
  { name: "a packet cut inside its length", hex: "d000" + "3080", verdict: "incomplete" },
  { name: "a topic with invalid UTF-8 is read as the reference reads it", hex: "30060002c3286162", verdict: "same" },
  { name: "a good packet, then a bad one in the same chunk: the good one is handed on before the refusal", hex: "d000" + "9003000103", verdict: "both refuse" },
  {
    // Found by the fuzzer (APT_OSTREE_FUZZ_SEED=6160, iteration 1) while the reader threw away the packets it had decoded from a chunk before refusing the chunk's last.
    name: "fuzz: PINGRESP, QoS 2 PUBLISHes, then a CONNECT, all in one chunk",
    hex: "d000344a0029e6bca22462396139c3a9392ff09f98806261242bf09f98802ee6bca25fc3a9c39f2430622f6220207a7fc9e26d21ddbe269dea1aec8ac8f906776d201e543efa7dd0b7694589e286101900044d5154540402003c000d61f09f9880c39f306100002e61324c001c6170742d6f73747265652f646576696365732f6465762d312f636d64ab813dad803ffd6d9b7c54efdb43edd6c9e1035e332a754a49c6620f57c0139b6b3dc86b2aa36e3349001c6170742d6f73747265652f646576696365732f6465762d312f636d64bfebb8ab2eb7909e737fd0d52d05b0ab168904df37dc26ed1f2fda76e687850a27325c7cfa4f8d6ac202fd",
    verdict: "not-from-a-server",
  },
];

// ---------------------------------------------------------------------------------------------

describe("the device's MQTT decoder against mqtt-packet", () => {
  it.each(KEPT_CASES)("kept case: $name", ({ hex, chunks, limit, verdict }) => {
    const stream = Buffer.from(hex, "hex");
    expect(differential(stream, chunks ?? [stream.length], limit ?? DEFAULT_MAX_PACKET_BYTES)).toBe(verdict);
    // And fed a byte at a time.
    expect(differential(stream, Array.from({ length: stream.length }, () => 1), limit ?? DEFAULT_MAX_PACKET_BYTES)).toBe(verdict);
  });

  it(`agrees on ${ITERATIONS} random streams of broker packets, whole and mutated, cut anywhere (seed ${SEED})`, () => {
    const verdicts = new Map<string, number>();
    for (let iteration = 0; iteration < ITERATIONS; iteration++) {
      const r = random(iterationSeed(SEED, iteration));
      const limit = r.pick([DEFAULT_MAX_PACKET_BYTES, 1000]);
      let stream: Buffer = Buffer.concat(Array.from({ length: 1 + r.int(5) }, () => randomBrokerPacket(r)));
      if (r.bool(0.6)) for (let m = 1 + r.int(3); m > 0 && stream.length > 0; m--) stream = mutate(r, stream, limit);
      const chunks = chunked(r, stream);
      let verdict: Verdict;
      try {
        verdict = differential(stream, chunks, limit);
      } catch (error) {
        throw failureReport(SEED, iteration, stream, chunks, limit, error as Error);
      }
      verdicts.set(verdict, (verdicts.get(verdict) ?? 0) + 1);
    }
    // The streams reach every outcome: a generator that stopped making some would test less.
    if (ITERATIONS >= 1000) {
      for (const outcome of ["same", "incomplete", "both refuse", ...DELIBERATE_DIFFERENCES.map((d) => d.key)]) {
        expect(verdicts.get(outcome) ?? 0, `streams ending "${outcome}"`).toBeGreaterThan(0);
      }
    }
  });
});

describe("the device's MQTT encoder against mqtt-packet", () => {
  function parseAll(bytes: Buffer): mqttPacket.Packet[] {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const packets: mqttPacket.Packet[] = [];
    parser.on("packet", (p) => packets.push(p));
    parser.on("error", (error) => {
      throw error;
    });
    expect(parser.parse(bytes)).toBe(0);
    return packets;
  }

  it(`encodes ${Math.ceil(ITERATIONS / 10)} random CONNECT, PUBLISH, SUBSCRIBE, PUBACK, PINGREQ and DISCONNECT packets as mqtt-packet reads them (seed ${SEED})`, () => {
    for (let iteration = 0; iteration < Math.ceil(ITERATIONS / 10); iteration++) {
      const r = random(iterationSeed(SEED ^ 0xc0ffee, iteration));
      const username = r.bool() ? randomText(r, 20) : undefined;
      const connect: ConnectPacket = {
        clientId: randomText(r, 23),
        keepaliveSeconds: r.int(65536),
        clean: r.bool(),
        ...(username !== undefined ? { username } : {}),
        ...(username !== undefined && r.bool() ? { password: randomText(r, 60) } : {}),
        ...(r.bool() ? { will: { topic: randomText(r, 30), payload: randomPayload(r), qos: r.pick([0, 1] as const), retain: r.bool() } } : {}),
      };
      const publish = { topic: randomText(r, 40), payload: randomPayload(r), qos: r.pick([0, 1] as const), retain: r.bool(), packetId: 1 + r.int(65535) };
      const subscribe = { packetId: 1 + r.int(65535), topics: Array.from({ length: 1 + r.int(4) }, () => randomText(r, 20)), qos: r.pick([0, 1] as const) };
      const pubackId = 1 + r.int(65535);
      const bytes = Buffer.concat([
        encodeConnect(connect),
        encodePublish(publish.topic, publish.payload, publish),
        encodeSubscribe(subscribe.packetId, subscribe.topics, subscribe.qos),
        encodePuback(pubackId),
        PINGREQ,
        DISCONNECT,
      ]);
      const context = `APT_OSTREE_FUZZ_SEED=${SEED} encoder iteration ${iteration}: ${bytes.length <= 16_384 ? bytes.toString("hex") : `${bytes.length} bytes`}`;
      let parsed: mqttPacket.Packet[];
      try {
        parsed = parseAll(bytes);
      } catch (error) {
        throw new Error(`${context}\nmqtt-packet refused it: ${(error as Error).message}`);
      }
      const [c, p, s, a, ping, bye] = parsed as [mqttPacket.IConnectPacket, mqttPacket.IPublishPacket, mqttPacket.ISubscribePacket, mqttPacket.IPubackPacket, mqttPacket.Packet, mqttPacket.Packet];
      expect(parsed.map((x) => x.cmd), context).toEqual(["connect", "publish", "subscribe", "puback", "pingreq", "disconnect"]);
      expect({ protocolId: c.protocolId, protocolVersion: c.protocolVersion, clientId: c.clientId, keepalive: c.keepalive, clean: c.clean, username: c.username, password: c.password?.toString("utf8") }, context).toEqual({
        protocolId: "MQTT", protocolVersion: 4, clientId: connect.clientId, keepalive: connect.keepaliveSeconds, clean: connect.clean, username: connect.username, password: connect.password,
      });
      expect(c.will ? { topic: c.will.topic, payload: Buffer.from(c.will.payload).toString("hex"), qos: c.will.qos, retain: c.will.retain } : undefined, context).toEqual(
        connect.will ? { ...connect.will, payload: connect.will.payload.toString("hex") } : undefined,
      );
      expect({ topic: p.topic, payload: Buffer.from(p.payload as Buffer).toString("hex"), qos: p.qos, retain: p.retain, dup: p.dup, messageId: p.qos > 0 ? p.messageId : null }, context).toEqual({
        topic: publish.topic, payload: publish.payload.toString("hex"), qos: publish.qos, retain: publish.retain, dup: false, messageId: publish.qos > 0 ? publish.packetId : null,
      });
      expect({ messageId: s.messageId, subscriptions: s.subscriptions }, context).toEqual({ messageId: subscribe.packetId, subscriptions: subscribe.topics.map((topic) => ({ topic, qos: subscribe.qos })) });
      expect(a.messageId, context).toBe(pubackId);
      expect([ping.cmd, bye.cmd]).toEqual(["pingreq", "disconnect"]);
    }
  });
});

describe("the device's MQTT reader under a hostile broker", () => {
  it("refuses a 1 MiB packet from its header alone, naming the size and the limit", () => {
    const reader = new PacketReader();
    // 0x30: PUBLISH; 0x80 0x80 0x40: Remaining Length 1,048,576 (2.2.3). Cut before the last length byte, it waits.
    expect(reader.push(Buffer.from([0x30, 0x80, 0x80]))).toEqual([]);
    let refusal: unknown;
    try {
      reader.push(Buffer.from([0x40]));
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(MqttPacketTooLargeError);
    expect(refusal).toBeInstanceOf(MqttProtocolError);
    expect(refusal).toMatchObject({ code: "E_MQTT_PACKET_TOO_LARGE", declaredBytes: 1_048_576, limitBytes: DEFAULT_MAX_PACKET_BYTES });
    expect((refusal as Error).message).toBe(`the broker sent a packet of 1048576 bytes, over the ${DEFAULT_MAX_PACKET_BYTES}-byte limit`);
    // The reader stays refused: nothing more is read from that connection.
    expect(() => reader.push(Buffer.alloc(10))).toThrow(MqttPacketTooLargeError);
  });

  it("takes a command-sized packet by default: 64 KiB of JSON with its topic", () => {
    const packet = generate({ cmd: "publish", topic: `apt-ostree/devices/${"d".repeat(63)}/cmd`, payload: Buffer.alloc(64 * 1024, 0x20), qos: 1, messageId: 1, retain: false, dup: false });
    expect(new PacketReader().push(packet)).toHaveLength(1);
  });

  it("copies a packet's bytes once, however it is cut: a 60 KiB PUBLISH a byte at a time copies O(n) bytes", () => {
    const packet = generate({ cmd: "publish", topic: "apt-ostree/devices/dev-1/cmd", payload: Buffer.alloc(60 * 1024, 7), qos: 1, messageId: 9, retain: false, dup: false });
    const concat = Buffer.concat;
    const copy = Buffer.prototype.copy;
    let copied = 0;
    let copies = 0;
    Buffer.concat = function (list: readonly Uint8Array[], totalLength?: number) {
      const joined = concat.call(Buffer, list, totalLength);
      copied += joined.length;
      copies++;
      return joined;
    } as unknown as typeof Buffer.concat;
    Buffer.prototype.copy = function (this: Buffer, ...args: Parameters<Buffer["copy"]>) {
      const count = copy.apply(this, args);
      copied += count;
      copies++;
      return count;
    };
    const received: IncomingPacket[] = [];
    try {
      const reader = new PacketReader();
      for (let i = 0; i < packet.length; i++) received.push(...reader.push(packet.subarray(i, i + 1)));
    } finally {
      Buffer.concat = concat;
      Buffer.prototype.copy = copy;
    }
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ type: "publish", packetId: 9 });
    // Joining each chunk onto all before it copies n²/2 bytes (~1.9 GB here); once per packet, n.
    expect(copied).toBeLessThanOrEqual(2 * packet.length);
    expect(copies).toBeLessThanOrEqual(2);
  });
});
