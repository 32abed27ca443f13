/**
 * mosquitto's dynamic-security plugin API, over the server's own connection to the broker: a
 * list of commands published to $CONTROL/dynamic-security/v1, answered on .../response with one
 * result per command, in order (mosquitto.org/documentation/dynamic-security/). One request at a
 * time, so an answer is the last request's.
 */
import type { MqttClient } from "mqtt";
import { AptOstreeError } from "../../../shared/errors.ts";
import type { DynsecCommand } from "./plan.ts";

const REQUEST_TOPIC = "$CONTROL/dynamic-security/v1";
const RESPONSE_TOPIC = `${REQUEST_TOPIC}/response`;
/** Commands per request: the answers to a page of verbose listings stay well under the server's packet limit. */
const MAX_BATCH = 100;

export class DynsecError extends AptOstreeError {
  constructor(code: "E_DYNSEC_TIMEOUT" | "E_DYNSEC_DISCONNECTED" | "E_DYNSEC_REFUSED" | "E_DYNSEC_ANSWER", message: string, cause?: unknown) {
    super(code, message, { cause });
  }
}

export interface DynsecResult {
  command: string;
  error?: string;
  data?: Record<string, unknown>;
}

export interface DynsecControl {
  /** Runs the commands in order; results in the same order (a failed command has `error`). */
  run(commands: DynsecCommand[]): Promise<DynsecResult[]>;
}

export function dynsecControl(client: MqttClient, timeoutMs = 10_000): DynsecControl {
  let waiting: { answer: (payload: Buffer) => void; fail: (error: Error) => void } | null = null;
  client.on("message", (topic, payload) => {
    if (topic === RESPONSE_TOPIC) waiting?.answer(payload);
  });
  // An answer is sent to the connection that asked, and is lost with it (dynsec kicks a client whose roles change, this one too).
  client.on("close", () => waiting?.fail(new DynsecError("E_DYNSEC_DISCONNECTED", "the connection to the broker closed before the dynamic-security plugin answered")));
  let subscribed: Promise<unknown> | null = null;
  let queue: Promise<unknown> = Promise.resolve();

  const request = async (commands: DynsecCommand[]): Promise<DynsecResult[]> => {
    subscribed ??= client.subscribeAsync(RESPONSE_TOPIC, { qos: 1 }).then((granted) => {
      if (granted.some((g) => g.qos === 128)) throw new DynsecError("E_DYNSEC_REFUSED", `the broker refused the server's subscription to ${RESPONSE_TOPIC}: give the client apt-ostree:server the dynsec admin role ('mosquitto_ctrl dynsec init FILE apt-ostree:server', docs/mosquitto/README.md)`);
    }).catch((error: unknown) => {
      subscribed = null;
      throw error;
    });
    await subscribed;
    const answer = new Promise<Buffer>((resolve, reject) => {
      const settle = (outcome: () => void) => {
        clearTimeout(timer);
        waiting = null;
        outcome();
      };
      const timer = setTimeout(() => settle(() => reject(new DynsecError("E_DYNSEC_TIMEOUT", `no answer on ${RESPONSE_TOPIC} within ${timeoutMs / 1000} s to ${commands[0]!.command}${commands.length > 1 ? ` and ${commands.length - 1} more` : ""}: is mosquitto's dynamic-security plugin loaded (docs/mosquitto/mosquitto-dynsec.conf), and does the client apt-ostree:server hold its admin role?`))), timeoutMs);
      waiting = { answer: (payload) => settle(() => resolve(payload)), fail: (error) => settle(() => reject(error)) };
    });
    // The answer's timeout also bounds a publish that waits for a connection that does not come back.
    return parseAnswer(await Promise.race([client.publishAsync(REQUEST_TOPIC, JSON.stringify({ commands }), { qos: 1 }).then(() => answer), answer]), commands);
  };

  return {
    run: (commands) => {
      const run = queue.then(async () => {
        const results: DynsecResult[] = [];
        for (let i = 0; i < commands.length; i += MAX_BATCH) results.push(...(await request(commands.slice(i, i + MAX_BATCH))));
        return results;
      });
      queue = run.catch(() => undefined);
      return run;
    },
  };
}

function parseAnswer(payload: Buffer, commands: DynsecCommand[]): DynsecResult[] {
  let results: unknown;
  try {
    results = (JSON.parse(payload.toString("utf8")) as { responses?: unknown }).responses;
  } catch (error) {
    throw new DynsecError("E_DYNSEC_ANSWER", `the dynamic-security plugin answered with something that is not JSON (${payload.length} bytes)`, error);
  }
  if (!Array.isArray(results) || results.length !== commands.length || results.some((r, i) => typeof r !== "object" || r === null || (r as DynsecResult).command !== commands[i]!.command)) {
    throw new DynsecError("E_DYNSEC_ANSWER", `the dynamic-security plugin's answer does not match the ${commands.length} command(s) sent (${commands[0]!.command}, ...): another client may be using ${RESPONSE_TOPIC} as apt-ostree:server`);
  }
  return results as DynsecResult[];
}
