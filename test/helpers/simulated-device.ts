/**
 * A device as the server sees it over MQTT: enrolls with a signed token, takes signed commands
 * from its command topic (verified with the server's key), and reports like the agent will.
 * Its behaviour on an update is set by the test: healthy, rolled-back, failed or silent.
 */
import { anyOf } from "../../shared/trust/signers.ts";
import mqtt, { type MqttClient } from "mqtt";
import { generateKeyPair, privateKeyPem, type Ed25519KeyPair } from "../../shared/sign/ed25519.ts";
import { verifyCommand } from "../../shared/wire/command.ts";
import { verifySignedManifest } from "../../shared/verify/manifest.ts";
import { createDeviceToken } from "../../shared/wire/device-token.ts";
import { signReport, type Report } from "../../shared/wire/report.ts";
import { DEFAULT_TOPIC_PREFIX, deviceTopic } from "../../shared/wire/topics.ts";

export type UpdateBehaviour = "healthy" | "rolled-back" | "failed" | "silent";

export class SimulatedDevice {
  readonly key: Ed25519KeyPair = generateKeyPair();
  behaviour: UpdateBehaviour = "healthy";
  /** Time between "downloading" and the outcome, to keep an update in flight. */
  updateDelayMs = 0;
  /** Every command received, including repeats of the same id (withdrawals apart). */
  readonly commandsReceived: string[] = [];
  /** The withdrawals received (a paused or aborted rollout's command). */
  readonly withdrawals: Array<{ id: string; reason: string }> = [];
  booted = { commit: "0".repeat(64), version: "0" };
  private readonly outcomes = new Map<string, Partial<Report> & { state: Report["state"] }>();
  /** Errors while handling a command (e.g. the server went away mid-report). */
  readonly errors: string[] = [];
  private counter = 0;
  private client: MqttClient | null = null;

  /** `enrollmentSecret`: the fleet secret its tokens prove (for a server with auto-accept). */
  constructor(readonly id: string, private readonly serverKey: Uint8Array, private readonly groups: string[], private readonly options: { enrollmentSecret?: Uint8Array } = {}) {}

  /**
   * With the embedded broker the signed token is the MQTT password; through an external broker
   * (`external`) the device connects as the broker allows and publishes the token as its hello,
   * or (`tls`) over TLS with the broker client certificate the server issued it, and no hello.
   */
  async connect(port: number, options: { external?: boolean; tls?: { ca: string; cert: string } } = {}): Promise<void> {
    const token = createDeviceToken(this.id, this.key, new Date(), undefined, this.options.enrollmentSecret ?? null);
    this.client = await mqtt.connectAsync(`${options.tls ? "mqtts" : "mqtt"}://127.0.0.1:${port}`, {
      clientId: this.id,
      ...(options.tls ? { ca: options.tls.ca, cert: options.tls.cert, key: privateKeyPem(this.key.seed) } : {}),
      ...(options.external || options.tls ? {} : { username: this.id, password: token }),
      reconnectPeriod: 0,
      protocolVersion: 4,
      will: { topic: deviceTopic(DEFAULT_TOPIC_PREFIX, this.id, "online"), payload: Buffer.from("offline"), qos: 1, retain: false },
    });
    this.client.on("message", (_topic, payload) => {
      this.onCommand(payload).catch((error: Error) => this.errors.push(error.message));
    });
    await this.client.subscribeAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, this.id, "cmd"), { qos: 1 });
    if (options.external || options.tls) {
      if (!options.tls) await this.client.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, this.id, "hello"), token, { qos: 1 });
      await this.client.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, this.id, "online"), "online", { qos: 1, retain: true });
    }
    await this.report({ state: "idle" });
  }

  /** Publishes raw bytes on any topic, as a misbehaving client would. */
  async publishRaw(topic: string, payload: string): Promise<void> {
    await this.client!.publishAsync(topic, payload, { qos: 1 });
  }

  /** Sends a fresh signed report (e.g. after being accepted). */
  async reportNow(state: Report["state"]): Promise<void> {
    await this.report({ state });
  }

  async disconnect(): Promise<void> {
    await this.client?.endAsync(true);
    this.client = null;
  }

  distinctCommands(): string[] {
    return [...new Set(this.commandsReceived)];
  }

  private async onCommand(payload: Buffer): Promise<void> {
    const command = verifyCommand(payload, anyOf([this.serverKey]));
    if (command.device !== this.id) throw new Error(`command ${command.id} is for ${command.device}, not ${this.id}`);
    if (command.type === "withdraw") {
      this.withdrawals.push({ id: command.id, reason: command.reason });
      return;
    }
    this.commandsReceived.push(command.id);
    // The same command again (re-published after a server restart): say where it stands, do not redo it.
    const earlier = this.outcomes.get(command.id);
    if (earlier) return this.report(earlier);
    if (command.type !== "update" || this.behaviour === "silent") return;
    const manifest = verifySignedManifest(command.manifest, { signers: anyOf([this.serverKey]), now: new Date(), architecture: "amd64" });
    const target = { commit: manifest.commit, version: manifest.version };
    const outcome: Partial<Report> & { state: Report["state"] } =
      this.behaviour === "healthy" ? { state: "healthy", command: command.id }
      : this.behaviour === "rolled-back" ? { state: "rolled-back", command: command.id, rolledBack: { from: target, to: this.booted, reason: "required health check app.sh failed" } }
      : { state: "failed", command: command.id, error: "download failed" };
    if (this.behaviour === "healthy") this.booted = target;
    this.outcomes.set(command.id, outcome);
    await this.report({ state: "downloading", command: command.id, progress: { bytes: 0, total: 100 } });
    if (this.updateDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.updateDelayMs));
    await this.report(outcome);
  }

  private async report(fields: Partial<Report> & { state: Report["state"] }): Promise<void> {
    const report: Report = { deviceId: this.id, counter: ++this.counter, sent: new Date().toISOString(), groups: this.groups, architecture: "amd64", booted: this.booted, ...fields };
    // Between a drop and the next connect the report is lost, as a real device's would be; the retained command, delivered again, gets it sent anew.
    if (!this.client) throw new Error(`disconnected: report ${report.counter} (${report.state}) lost`);
    await this.client.publishAsync(deviceTopic(DEFAULT_TOPIC_PREFIX, this.id, "state"), signReport(report, this.key), { qos: 1 });
  }
}
