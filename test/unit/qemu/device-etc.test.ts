import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { parseAgentConfig } from "../../../device/config/settings.ts";
import { deviceEtcFiles } from "../../../qemu/disk.ts";

const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

describe("the device's /etc on a built disk", () => {
  it("pins the CA given with --ca in /etc/apt-ostree/ca.pem and names it as the agent's caFile", () => {
    const files = deviceEtcFiles({ server: "https://10.0.2.2:8080", mqtt: "mqtts://10.0.2.2:1883", publicKeys: [], ca: CA });
    expect(files["apt-ostree/ca.pem"]).toBe(CA);
    const config = parseAgentConfig(files["apt-ostree/agent.yaml"]!, "agent.yaml");
    expect(config).toMatchObject({ server: "https://10.0.2.2:8080", mqtt: "mqtts://10.0.2.2:1883", caFile: "/etc/apt-ostree/ca.pem" });
  });

  it("writes no CA and no caFile without one", () => {
    const files = deviceEtcFiles({ server: "http://10.0.2.2:8080", mqtt: "mqtt://10.0.2.2:1883", publicKeys: [] });
    expect(files["apt-ostree/ca.pem"]).toBeUndefined();
    expect(parseYaml(files["apt-ostree/agent.yaml"]!)).not.toHaveProperty("caFile");
  });

  it("adds the test console's unit and its drop-in only when asked, and no console otherwise", () => {
    const plain = deviceEtcFiles({ server: "http://10.0.2.2:8080", mqtt: "mqtt://10.0.2.2:1883", publicKeys: [] });
    expect(Object.keys(plain).filter((path) => path.startsWith("systemd/"))).toEqual([]);
    const files = deviceEtcFiles({ server: "http://10.0.2.2:8080", mqtt: "mqtt://10.0.2.2:1883", publicKeys: [], testConsole: true });
    expect(files["systemd/system/apt-ostree-test-console.service"]).toMatch(/^StandardInput=file:\/dev\/virtio-ports\/org\.apt-ostree\.test-console$/m);
    expect(files["systemd/system/multi-user.target.d/apt-ostree-test-console.conf"]).toBe("[Unit]\nWants=apt-ostree-test-console.service\n");
  });
});
