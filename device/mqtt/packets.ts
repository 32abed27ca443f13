/**
 * MQTT 3.1.1 packets (OASIS standard, section 3), pure: the few the agent sends and receives.
 * Encoders return whole packets; `PacketReader` cuts a byte stream into decoded packets, refusing
 * whatever a broker may not send a client (test/unit/mqtt/codec-differential.test.ts holds it
 * against mqtt-packet and lists where it is stricter).
 */
import { AptOstreeError } from "../../shared/errors.ts";

export type Qos = 0 | 1;

export interface ConnectPacket {
  clientId: string;
  keepaliveSeconds: number;
  clean: boolean;
  username?: string;
  password?: string;
  will?: { topic: string; payload: Buffer; qos: Qos; retain: boolean };
}

export type IncomingPacket =
  | { type: "connack"; sessionPresent: boolean; returnCode: number }
  | { type: "publish"; topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean; dup: boolean; packetId: number | null }
  | { type: "puback"; packetId: number }
  | { type: "suback"; packetId: number; granted: number[] }
  | { type: "pingresp" };

/** The broker broke the protocol (a malformed or unexpected packet): the client drops the connection and connects again. */
export class MqttProtocolError extends AptOstreeError {
  constructor(message: string, code = "E_MQTT_PROTOCOL") {
    super(code, message);
  }
}

/** A packet whose fixed header declares more than the reader takes; refused before its body is read. */
export class MqttPacketTooLargeError extends MqttProtocolError {
  constructor(
    readonly declaredBytes: number,
    readonly limitBytes: number,
  ) {
    super(`the broker sent a packet of ${declaredBytes} bytes, over the ${limitBytes}-byte limit`, "E_MQTT_PACKET_TOO_LARGE");
  }
}

/**
 * The largest Remaining Length taken from a broker by default: a command's JSON (at most 64 KiB,
 * COMMAND_JSON_LIMITS in shared/wire/command.ts) with its topic and packet id, and room to spare.
 */
export const DEFAULT_MAX_PACKET_BYTES = 64 * 1024 + 1024;

/** CONNACK return codes other than 0, as the spec names them (3.2.2.3). */
export const CONNACK_REFUSALS: Record<number, string> = {
  1: "unacceptable protocol version",
  2: "client identifier rejected",
  3: "server unavailable",
  4: "bad user name or password",
  5: "not authorized",
};

/** SUBACK's failure return code (3.9.3). */
export const SUBACK_FAILURE = 0x80;

const TYPE = {
  connect: 1, connack: 2, publish: 3, puback: 4, pubrec: 5, pubrel: 6, pubcomp: 7, subscribe: 8, suback: 9, unsubscribe: 10, unsuback: 11, pingreq: 12, pingresp: 13, disconnect: 14,
} as const;
const TYPE_NAMES = ["reserved type 0", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "reserved type 15"];
const MAX_REMAINING_LENGTH = 268_435_455;

function utf8(text: string): Buffer {
  const bytes = Buffer.from(text, "utf8");
  return binary(bytes);
}

function binary(bytes: Buffer): Buffer {
  if (bytes.length > 0xffff) throw new RangeError(`an MQTT string or binary field holds at most 65535 bytes, not ${bytes.length}`);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function uint16(value: number): Buffer {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(value);
  return bytes;
}

/** The Remaining Length field (MQTT 3.1.1 section 2.2.3) for a body of `length` bytes. */
export function remainingLength(length: number): Buffer {
  if (length > MAX_REMAINING_LENGTH) throw new RangeError(`an MQTT packet holds at most ${MAX_REMAINING_LENGTH} bytes, not ${length}`);
  const bytes: number[] = [];
  do {
    let digit = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) digit |= 0x80;
    bytes.push(digit);
  } while (length > 0);
  return Buffer.from(bytes);
}

function packet(firstByte: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([firstByte]), remainingLength(body.length), body]);
}

export function encodeConnect(connect: ConnectPacket): Buffer {
  let flags = connect.clean ? 0x02 : 0;
  if (connect.will) flags |= 0x04 | (connect.will.qos << 3) | (connect.will.retain ? 0x20 : 0);
  if (connect.password !== undefined) flags |= 0x40;
  if (connect.username !== undefined) flags |= 0x80;
  if (connect.password !== undefined && connect.username === undefined) throw new RangeError("MQTT 3.1.1 sends a password only with a user name");
  const payload = [utf8(connect.clientId)];
  if (connect.will) payload.push(utf8(connect.will.topic), binary(connect.will.payload));
  if (connect.username !== undefined) payload.push(utf8(connect.username));
  if (connect.password !== undefined) payload.push(binary(Buffer.from(connect.password, "utf8")));
  return packet(TYPE.connect << 4, utf8("MQTT"), Buffer.from([4, flags]), uint16(connect.keepaliveSeconds), ...payload);
}

export function encodePublish(topic: string, payload: Buffer, options: { qos: Qos; retain: boolean; packetId?: number }): Buffer {
  const firstByte = (TYPE.publish << 4) | (options.qos << 1) | (options.retain ? 1 : 0);
  if (options.qos === 0) return packet(firstByte, utf8(topic), payload);
  if (!options.packetId) throw new RangeError("a QoS 1 PUBLISH needs a packet id");
  return packet(firstByte, utf8(topic), uint16(options.packetId), payload);
}

export function encodePuback(packetId: number): Buffer {
  return packet(TYPE.puback << 4, uint16(packetId));
}

export function encodeSubscribe(packetId: number, topics: string[], qos: Qos): Buffer {
  if (topics.length === 0) throw new RangeError("SUBSCRIBE needs at least one topic");
  return packet((TYPE.subscribe << 4) | 0x02, uint16(packetId), ...topics.flatMap((topic) => [utf8(topic), Buffer.from([qos])]));
}

export const PINGREQ = Buffer.from([TYPE.pingreq << 4, 0]);
export const DISCONNECT = Buffer.from([TYPE.disconnect << 4, 0]);


/**
 * The packets a server sends a client, with the flags their first byte must carry (2.2.2,
 * MQTT-2.2.2-2); PUBLISH's flags are its DUP, QoS and RETAIN. Any other type (CONNECT,
 * SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT, the reserved 0 and 15) is refused.
 */
const SERVER_FLAGS: Partial<Record<number, number>> = {
  [TYPE.connack]: 0, [TYPE.puback]: 0, [TYPE.pubrec]: 0, [TYPE.pubrel]: 2, [TYPE.pubcomp]: 0, [TYPE.suback]: 0, [TYPE.unsuback]: 0, [TYPE.pingresp]: 0,
};

/** Remaining Lengths fixed by the spec (3.2.1, 3.4.1, 3.5.1, 3.6.1, 3.7.1, 3.11.1, 3.13.1). */
const FIXED_LENGTH: Partial<Record<number, number>> = {
  [TYPE.connack]: 2, [TYPE.puback]: 2, [TYPE.pubrec]: 2, [TYPE.pubrel]: 2, [TYPE.pubcomp]: 2, [TYPE.unsuback]: 2, [TYPE.pingresp]: 0,
};

function checkFirstByte(first: number): void {
  const type = first >> 4;
  const flags = first & 0x0f;
  if (type === TYPE.publish) {
    if ((flags & 0x06) === 0x06) throw new MqttProtocolError("PUBLISH with QoS 3 from the broker (MQTT-3.3.1-4)");
    return;
  }
  const required = SERVER_FLAGS[type];
  if (required === undefined) throw new MqttProtocolError(`the broker sent ${TYPE_NAMES[type]}, which a server never sends a client`);
  if (flags !== required) throw new MqttProtocolError(`${TYPE_NAMES[type]} with flags 0x${flags.toString(16)} from the broker; 2.2.2 requires 0x${required.toString(16)}`);
}

function checkLength(type: number, length: number, maxBytes: number): void {
  if (length > maxBytes) throw new MqttPacketTooLargeError(length, maxBytes);
  const fixed = FIXED_LENGTH[type];
  if (fixed !== undefined && length !== fixed) throw new MqttProtocolError(`${TYPE_NAMES[type]} of ${length} bytes from the broker; the spec says ${fixed}`);
  if (type === TYPE.suback && length < 3) throw new MqttProtocolError(`SUBACK of ${length} bytes from the broker: no return code`);
}

/**
 * Cuts the bytes from the socket into packets. Chunks are kept as they come and joined once per
 * packet, when all its bytes are in, so a packet costs one copy however the network cuts it
 * (joining every chunk onto the bytes before it made a packet fed a byte at a time cost n²/2).
 * The fixed header is checked as soon as it is in: a packet over `maxBytes`, or of a type or
 * flags a broker may not send, is refused before its body is read. After a refusal the reader
 * refuses everything: the connection is done.
 */
export class PacketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The current packet's first byte once its fixed header is read, else -1. */
  private first = -1;
  private headerLength = 0;
  private length = 0;
  private refusal: unknown = null;

  constructor(private readonly maxBytes = DEFAULT_MAX_PACKET_BYTES) {}

  /**
   * Reads `chunk` and hands each whole packet to `onPacket` as it is decoded, so the packets
   * before a refusal are delivered before it is thrown; returns them too. An error thrown by
   * `onPacket` ends the reader as a refusal does.
   */
  push(chunk: Buffer, onPacket?: (packet: IncomingPacket) => void): IncomingPacket[] {
    if (this.refusal) throw this.refusal;
    try {
      return this.read(chunk, onPacket);
    } catch (error) {
      this.refusal = error;
      this.chunks = [];
      this.buffered = 0;
      throw error;
    }
  }

  private read(chunk: Buffer, onPacket: ((packet: IncomingPacket) => void) | undefined): IncomingPacket[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const packets: IncomingPacket[] = [];
    while (this.buffered > 0 && (this.first >= 0 || this.readHeader())) {
      const size = this.headerLength + this.length;
      if (this.buffered < size) break;
      const first = this.first;
      this.first = -1;
      const decoded = decode(first, this.take(size).subarray(this.headerLength));
      if (!decoded) continue;
      packets.push(decoded);
      onPacket?.(decoded);
    }
    return packets;
  }

  /** Reads the fixed header (2.2): the type byte and a Remaining Length of 1 to 4 bytes (2.2.3). False until all of it is in. */
  private readHeader(): boolean {
    const first = this.byteAt(0);
    checkFirstByte(first);
    let length = 0;
    for (let i = 1; i <= 4; i++) {
      if (this.buffered <= i) return false;
      const digit = this.byteAt(i);
      length += (digit & 0x7f) * 128 ** (i - 1);
      if ((digit & 0x80) === 0) {
        checkLength(first >> 4, length, this.maxBytes);
        this.first = first;
        this.headerLength = i + 1;
        this.length = length;
        return true;
      }
    }
    throw new MqttProtocolError("malformed remaining length in a packet from the broker: more than 4 bytes (2.2.3)");
  }

  /** Byte `index` of the buffered bytes; only the header's first five are asked for. */
  private byteAt(index: number): number {
    for (const chunk of this.chunks) {
      if (index < chunk.length) return chunk[index]!;
      index -= chunk.length;
    }
    throw new RangeError(`byte ${index} is not buffered`);
  }

  /** The next `size` bytes, a view when one chunk holds them, else one copy. */
  private take(size: number): Buffer {
    this.buffered -= size;
    const head = this.chunks[0]!;
    if (head.length >= size) {
      if (head.length === size) this.chunks.shift();
      else this.chunks[0] = head.subarray(size);
      return head.subarray(0, size);
    }
    let count = 0;
    let joined = 0;
    while (joined < size) joined += this.chunks[count++]!.length;
    const parts = this.chunks.splice(0, count);
    const last = parts[count - 1]!;
    if (joined > size) this.chunks.unshift(last.subarray(last.length - (joined - size)));
    return Buffer.concat(parts, size);
  }
}

function readUtf8(body: Buffer, offset: number): [string, number] {
  if (body.length < offset + 2) throw new MqttProtocolError("truncated string in a packet from the broker");
  const length = body.readUInt16BE(offset);
  if (body.length < offset + 2 + length) throw new MqttProtocolError(`a string of ${length} bytes past the end of a packet from the broker`);
  return [body.toString("utf8", offset + 2, offset + 2 + length), offset + 2 + length];
}

/** A packet whose fixed header `checkFirstByte` and `checkLength` took; null for those the agent has no use for (UNSUBACK, PUBREC, PUBREL, PUBCOMP). */
function decode(first: number, body: Buffer): IncomingPacket | null {
  switch (first >> 4) {
    case TYPE.connack:
      if (body[0]! > 1) throw new MqttProtocolError(`CONNACK with acknowledge flags 0x${body[0]!.toString(16)} from the broker; bits 7-1 are reserved (3.2.2.1)`);
      return { type: "connack", sessionPresent: body[0] === 1, returnCode: body[1]! };
    case TYPE.publish: {
      const qos = (first >> 1) & 3;
      const retain = (first & 1) === 1;
      const dup = (first & 8) === 8;
      const [topic, offset] = readUtf8(body, 0);
      if (qos === 0) return { type: "publish", topic, payload: body.subarray(offset), qos: 0, retain, dup, packetId: null };
      if (body.length < offset + 2) throw new MqttProtocolError(`QoS ${qos} PUBLISH without a packet id from the broker (3.3.2.2)`);
      return { type: "publish", topic, payload: body.subarray(offset + 2), qos: qos as 1 | 2, retain, dup, packetId: body.readUInt16BE(offset) };
    }
    case TYPE.puback:
      return { type: "puback", packetId: body.readUInt16BE(0) };
    case TYPE.suback: {
      const granted = [...body.subarray(2)];
      const bad = granted.find((code) => code > 2 && code !== SUBACK_FAILURE);
      if (bad !== undefined) throw new MqttProtocolError(`SUBACK with return code 0x${bad.toString(16)} from the broker; 3.9.3 allows 0, 1, 2 and 0x80`);
      return { type: "suback", packetId: body.readUInt16BE(0), granted };
    }
    case TYPE.pingresp:
      return { type: "pingresp" };
    default:
      return null;
  }
}
