/** Our MQTT 3.1.1 codec against mqtt-packet (what mqtt.js and aedes use) as the reference. */
import mqttPacket from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { encodeConnect, encodePuback, encodePublish, encodeSubscribe, MqttProtocolError, PacketReader, PINGREQ, DISCONNECT } from "../../../device/mqtt/packets.ts";

function parseWithReference(bytes: Buffer): mqttPacket.Packet[] {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: mqttPacket.Packet[] = [];
  parser.on("packet", (p) => packets.push(p));
  parser.on("error", (error) => {
    throw error;
  });
  parser.parse(bytes);
  return packets;
}

const generate = (p: Record<string, unknown>) => mqttPacket.generate(p as unknown as mqttPacket.Packet, { protocolVersion: 4 });

describe("MQTT 3.1.1 packets", () => {
  it("encodes CONNECT with a will, user name and password as the spec (and mqtt-packet) read it", () => {
    const [parsed] = parseWithReference(
      encodeConnect({
        clientId: "dev-1",
        keepaliveSeconds: 60,
        clean: true,
        username: "dev-1",
        password: "token.é",
        will: { topic: "apt-ostree/devices/dev-1/online", payload: Buffer.from("offline"), qos: 1, retain: true },
      }),
    );
    expect(parsed).toMatchObject({
      cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId: "dev-1", keepalive: 60, clean: true, username: "dev-1",
      will: { topic: "apt-ostree/devices/dev-1/online", qos: 1, retain: true },
    });
    expect((parsed as mqttPacket.IConnectPacket).password!.toString()).toBe("token.é");
    expect((parsed as mqttPacket.IConnectPacket).will!.payload.toString()).toBe("offline");
  });

  it("encodes CONNECT without credentials or will", () => {
    const [parsed] = parseWithReference(encodeConnect({ clientId: "x", keepaliveSeconds: 0, clean: false }));
    expect(parsed).toMatchObject({ cmd: "connect", clientId: "x", keepalive: 0, clean: false });
    expect(parsed).not.toHaveProperty("username");
    expect(() => encodeConnect({ clientId: "x", keepaliveSeconds: 1, clean: true, password: "p" })).toThrow(/only with a user name/);
  });

  it("encodes PUBLISH at QoS 0 and 1, SUBSCRIBE, PUBACK, PINGREQ and DISCONNECT", () => {
    const big = Buffer.alloc(200_000, 7);
    const packets = parseWithReference(
      Buffer.concat([
        encodePublish("a/b", Buffer.from("hi"), { qos: 0, retain: true }),
        encodePublish("a/c", big, { qos: 1, retain: false, packetId: 513 }),
        encodeSubscribe(9, ["x/cmd", "g/+"], 1),
        encodePuback(65535),
        PINGREQ,
        DISCONNECT,
      ]),
    );
    expect(packets.map((p) => p.cmd)).toEqual(["publish", "publish", "subscribe", "puback", "pingreq", "disconnect"]);
    expect(packets[0]).toMatchObject({ topic: "a/b", qos: 0, retain: true });
    expect((packets[0] as mqttPacket.IPublishPacket).payload.toString()).toBe("hi");
    expect(packets[1]).toMatchObject({ topic: "a/c", qos: 1, retain: false, messageId: 513 });
    expect(Buffer.compare((packets[1] as mqttPacket.IPublishPacket).payload as Buffer, big)).toBe(0);
    expect(packets[2]).toMatchObject({ messageId: 9, subscriptions: [{ topic: "x/cmd", qos: 1 }, { topic: "g/+", qos: 1 }] });
    expect(packets[3]).toMatchObject({ messageId: 65535 });
    expect(() => encodePublish("a", Buffer.alloc(0), { qos: 1, retain: false })).toThrow(/packet id/);
  });

  it("decodes what a broker sends, whole or cut at every byte", () => {
    const stream = Buffer.concat([
      generate({ cmd: "connack", returnCode: 0, sessionPresent: true }),
      generate({ cmd: "publish", topic: "d/cmd", payload: Buffer.alloc(300, 1), qos: 1, messageId: 77, retain: true, dup: false }),
      generate({ cmd: "publish", topic: "d/x", payload: Buffer.from("q0"), qos: 0, retain: false, dup: false }),
      generate({ cmd: "puback", messageId: 3 }),
      generate({ cmd: "suback", messageId: 4, granted: [1, 128] }),
      generate({ cmd: "pingresp" }),
      generate({ cmd: "unsuback", messageId: 5 }),
    ]);
    const expected = [
      { type: "connack", sessionPresent: true, returnCode: 0 },
      { type: "publish", topic: "d/cmd", qos: 1, retain: true, dup: false, packetId: 77, payload: Buffer.alloc(300, 1) },
      { type: "publish", topic: "d/x", qos: 0, retain: false, dup: false, packetId: null, payload: Buffer.from("q0") },
      { type: "puback", packetId: 3 },
      { type: "suback", packetId: 4, granted: [1, 128] },
      { type: "pingresp" },
    ];
    expect(new PacketReader(1 << 20).push(stream)).toEqual(expected);
    const reader = new PacketReader(1 << 20);
    const bytewise = [...stream].flatMap((byte) => reader.push(Buffer.from([byte])));
    expect(bytewise).toEqual(expected);
  });

  it("refuses a packet over the size limit and a malformed length", () => {
    const packet = generate({ cmd: "publish", topic: "t", payload: Buffer.alloc(2000), qos: 0, retain: false, dup: false });
    expect(() => new PacketReader(1000).push(packet)).toThrow(MqttProtocolError);
    expect(() => new PacketReader(1000).push(packet)).toThrow(/over the 1000-byte limit/);
    expect(() => new PacketReader(1 << 30).push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toThrow(/malformed remaining length/);
  });
});
