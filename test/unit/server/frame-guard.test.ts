import mqttPacket from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { FrameScanner, MalformedLengthError, PacketTooLargeError } from "../../../server/mqtt/frame-guard.ts";
import { ConnectionLimiter } from "../../../server/mqtt/connection-limits.ts";

const publish = (bytes: number) => mqttPacket.generate({ cmd: "publish", topic: "t", payload: Buffer.alloc(bytes), qos: 0, retain: false, dup: false, messageId: undefined as never }, { protocolVersion: 4 });

describe("MQTT frame scanner", () => {
  it("follows packet boundaries across any chunking and passes packets up to the limit", () => {
    const stream = Buffer.concat([publish(10), publish(1000), publish(0), mqttPacket.generate({ cmd: "pingreq" }), publish(4000)]);
    for (const size of [1, 2, 3, 7, 64, stream.length]) {
      const scanner = new FrameScanner(4096);
      for (let i = 0; i < stream.length; i += size) expect(scanner.push(stream.subarray(i, i + size))).toBeNull();
    }
  });

  it("refuses at the header a packet whose declared size passes the limit", () => {
    const scanner = new FrameScanner(4096);
    expect(scanner.push(publish(100))).toBeNull();
    const big = publish(5000);
    const error = scanner.push(big.subarray(0, 3));
    expect(error).toBeInstanceOf(PacketTooLargeError);
    expect((error as PacketTooLargeError).declared).toBeGreaterThan(4096);
  });

  it("refuses a length that takes five bytes", () => {
    expect(new FrameScanner(1 << 30).push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBeInstanceOf(MalformedLengthError);
  });

  it("refuses a header that declares 64 MiB at its last length byte, before any body byte", () => {
    const scanner = new FrameScanner(65536);
    expect(scanner.push(Buffer.from([0x10, 0x80, 0x80, 0x80]))).toBeNull();
    expect(scanner.push(Buffer.from([0x20]))).toBeInstanceOf(PacketTooLargeError);
  });
});

describe("connection limiter", () => {
  it("caps connections in total, per address and unauthenticated per address, and frees them on release", () => {
    const limiter = new ConnectionLimiter({ maxConnections: 5, maxConnectionsPerAddress: 3, maxUnauthenticatedPerAddress: 2, maxUnauthenticated: 100 });
    const a1 = limiter.admit("a");
    const a2 = limiter.admit("a");
    expect(limiter.admit("a")).toBe("too-many-unauthenticated-from-address");
    if (typeof a1 === "string" || typeof a2 === "string") throw new Error("admitted expected");
    a1.authenticated();
    a2.authenticated();
    expect(typeof limiter.admit("a")).toBe("object");
    expect(limiter.admit("a")).toBe("too-many-from-address");
    expect(typeof limiter.admit("b")).toBe("object");
    expect(typeof limiter.admit("c")).toBe("object");
    expect(limiter.admit("d")).toBe("too-many-connections");
    a1.release();
    a1.release();
    expect(limiter.connections).toBe(4);
    expect(typeof limiter.admit("d")).toBe("object");
  });

  it("caps connections that have not authenticated in total, across addresses", () => {
    const limiter = new ConnectionLimiter({ maxConnections: 100, maxConnectionsPerAddress: 100, maxUnauthenticatedPerAddress: 100, maxUnauthenticated: 2 });
    const a = limiter.admit("a");
    limiter.admit("b");
    expect(limiter.admit("c")).toBe("too-many-unauthenticated");
    if (typeof a === "string") throw new Error("admitted expected");
    a.authenticated();
    expect(typeof limiter.admit("c")).toBe("object");
  });
});
