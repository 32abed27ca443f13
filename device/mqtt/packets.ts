/**
 * MQTT 3.1.1 packets (OASIS standard, section 3), pure: the few the agent sends and receives.
 * Encoders return whole packets; `PacketReader` cuts a byte stream into decoded packets.
 */

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

export class MqttProtocolError extends Error {}

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

const TYPE = { connect: 1, connack: 2, publish: 3, puback: 4, subscribe: 8, suback: 9, pingreq: 12, pingresp: 13, disconnect: 14 } as const;
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

function remainingLength(length: number): Buffer {
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

/** Accumulates bytes from the socket and hands out whole packets; refuses packets over `maxBytes`. */
export class PacketReader {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): IncomingPacket[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const packets: IncomingPacket[] = [];
    for (;;) {
      const header = this.header();
      if (!header) break;
      const { headerLength, length } = header;
      if (this.buffered.length < headerLength + length) break;
      const first = this.buffered[0]!;
      const body = this.buffered.subarray(headerLength, headerLength + length);
      this.buffered = this.buffered.subarray(headerLength + length);
      const decoded = decode(first, body);
      if (decoded) packets.push(decoded);
    }
    return packets;
  }

  private header(): { headerLength: number; length: number } | null {
    let length = 0;
    for (let i = 1; i <= 4; i++) {
      if (this.buffered.length <= i) return null;
      const digit = this.buffered[i]!;
      length += (digit & 0x7f) * 128 ** (i - 1);
      if ((digit & 0x80) === 0) {
        if (length > this.maxBytes) throw new MqttProtocolError(`the broker sent a packet of ${length} bytes, over the ${this.maxBytes}-byte limit`);
        return { headerLength: i + 1, length };
      }
    }
    throw new MqttProtocolError("malformed remaining length in a packet from the broker");
  }
}

function readUtf8(body: Buffer, offset: number): [string, number] {
  if (body.length < offset + 2) throw new MqttProtocolError("truncated string in a packet from the broker");
  const length = body.readUInt16BE(offset);
  if (body.length < offset + 2 + length) throw new MqttProtocolError("truncated string in a packet from the broker");
  return [body.toString("utf8", offset + 2, offset + 2 + length), offset + 2 + length];
}

function need(body: Buffer, bytes: number, what: string): void {
  if (body.length < bytes) throw new MqttProtocolError(`truncated ${what} from the broker`);
}

/** Null for packet types the agent does not use (the client ignores them). */
function decode(first: number, body: Buffer): IncomingPacket | null {
  switch (first >> 4) {
    case TYPE.connack:
      need(body, 2, "CONNACK");
      return { type: "connack", sessionPresent: (body[0]! & 1) === 1, returnCode: body[1]! };
    case TYPE.publish: {
      const qos = (first >> 1) & 3;
      if (qos === 3) throw new MqttProtocolError("PUBLISH with QoS 3 from the broker");
      const [topic, offset] = readUtf8(body, 0);
      if (qos === 0) return { type: "publish", topic, payload: body.subarray(offset), qos: 0, retain: (first & 1) === 1, dup: (first & 8) === 8, packetId: null };
      need(body, offset + 2, "PUBLISH");
      return { type: "publish", topic, payload: body.subarray(offset + 2), qos: qos as 1 | 2, retain: (first & 1) === 1, dup: (first & 8) === 8, packetId: body.readUInt16BE(offset) };
    }
    case TYPE.puback:
      need(body, 2, "PUBACK");
      return { type: "puback", packetId: body.readUInt16BE(0) };
    case TYPE.suback:
      need(body, 3, "SUBACK");
      return { type: "suback", packetId: body.readUInt16BE(0), granted: [...body.subarray(2)] };
    case TYPE.pingresp:
      return { type: "pingresp" };
    default:
      return null;
  }
}
