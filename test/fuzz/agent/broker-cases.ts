/**
 * Cases where the broker misbehaves: garbage on the live connection, or in place of the next
 * connection's CONNACK. The agent refuses it, connects again, and stays as it was; it never
 * counts more connections than it made, nor acts on a PUBLISH sent before the CONNACK.
 */
import { signCommand } from "../../../shared/wire/command.ts";
import type { Prng } from "../prng.ts";
import { brokerStream, connack, publish, STREAM_KINDS, suback } from "./broker-packets.ts";
import { Finding } from "./in-process.ts";
import { isEvent, mqttCode, nextCommand, type ProcessContext } from "./process-context.ts";

/** Garbage on the live broker connection: the agent refuses it, reconnects, and stays as it was. */
export async function brokerGarbage(prng: Prng, ctx: ProcessContext): Promise<string> {
  const { device } = ctx;
  device.mirror.reset("404");
  const how = prng.pick([...STREAM_KINDS, "connack-again"] as const);
  const command = Buffer.from(signCommand(nextCommand(ctx, device.signedV3), [ctx.stranger]));
  const stream = how === "connack-again" ? Buffer.concat(Array.from({ length: 1 + prng.int(2000) }, () => connack(0))) : brokerStream(prng, command, how).bytes;
  const mark = device.mark();
  const before = device.broker.accepted;
  const connection = device.broker.sendGarbage(stream);
  if (!connection) throw new Error("no live broker connection for the garbage");
  await device.waitFor(() => connection.closed, 10_000, "the garbage connection to close");
  await device.waitFor(() => device.broker.live(), 15_000, "the agent to reconnect");
  const connects = device.since(mark, (e) => e.event === "agent.mqtt.connected").length;
  if (connects > device.broker.accepted - before) throw new Finding(`${connects} 'connected' events for ${device.broker.accepted - before} new connection(s) after ${how}`, stream.toString("hex").slice(0, 4000));
  const error = device.since(mark, isEvent("agent.mqtt.error"))[0];
  return `agent:broker:${how}:${error ? mqttCode(error) : "hung-up"}`;
}

/** Garbage in place of the next connection's CONNACK. */
export async function garbageBeforeConnack(prng: Prng, ctx: ProcessContext): Promise<string> {
  const { device } = ctx;
  device.mirror.reset("404");
  const kind = prng.pick(["refused", "flags", "publish-first", "suback-first", "random", "mutated"] as const);
  device.broker.garbageInsteadOfConnack = {
    refused: () => connack(1 + prng.int(5)),
    flags: () => Buffer.from([0x20, 0x02, 0x02 + prng.int(250), 0]),
    "publish-first": () => Buffer.concat([publish(device.broker.commandTopic, Buffer.from(signCommand(nextCommand(ctx, device.signedV3), [ctx.pinned])), { qos: 1, packetId: 3 }), connack(0)]),
    "suback-first": () => Buffer.concat([suback(1, [1]), connack(0)]),
    random: () => prng.bytes(1 + prng.int(64)),
    mutated: () => prng.mutate(connack(0)),
  }[kind]();
  const mark = device.mark();
  device.broker.live()?.socket.destroy();
  await device.waitFor(() => device.broker.garbageInsteadOfConnack === null, 15_000, "the agent to reconnect into the garbage");
  await device.waitFor(() => device.broker.live(), 20_000, "the agent to reconnect after the garbage");
  if (kind === "publish-first" && device.since(mark, (e) => e.event === "agent.manifest.rejected" || e.event === "agent.state").length > 0) {
    throw new Finding("the agent acted on a PUBLISH that came before the CONNACK", "");
  }
  const error = device.since(mark, isEvent("agent.mqtt.error"))[0];
  return `agent:before-connack:${kind}:${error ? mqttCode(error) : "hung-up"}`;
}
