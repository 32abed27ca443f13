import type { ServeSettings } from "../../server/config/settings.ts";
import { DEFAULT_LIMITS } from "../../server/config/limits.ts";

export const TEST_ADMIN_TOKEN = "test-admin-token-0123456789";

/** Settings for an in-process test server: loopback, any free ports, embedded broker. */
export function testServerSettings(overrides: Partial<ServeSettings> & Pick<ServeSettings, "repo" | "data">): ServeSettings {
  return { httpPort: 0, mqttPort: 0, mqttWsPort: 0, mqttUrl: null, mqttDynsec: false, db: null, brokerRedis: null, repoUrl: null, host: "127.0.0.1", autoAccept: false, enrollmentSecretFile: null, adminToken: TEST_ADMIN_TOKEN, signingKey: null, limits: DEFAULT_LIMITS, tls: null, ...overrides };
}
