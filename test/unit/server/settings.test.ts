import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_LIMITS } from "../../../server/config/limits.ts";
import { ConfigError, SERVE_DEFAULTS, readConfigFile, resolveServeSettings } from "../../../server/config/settings.ts";
import { makeTempDir, removeTree } from "../../helpers/tmp.ts";

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir("settings");
});
afterAll(async () => removeTree(dir));

describe("serve settings", () => {
  it("takes flags over environment over config file over defaults", () => {
    const file = { repo: "/file/repo", data: "/file/data", httpPort: 1111, host: "::1", adminToken: "file-token-0123456789" };
    const env = { APT_OSTREE_REPO: "/env/repo", APT_OSTREE_HTTP_PORT: "2222", APT_OSTREE_ADMIN_TOKEN: "env-token-0123456789" };
    expect(resolveServeSettings({ repo: "/flag/repo" }, env, file)).toEqual({
      repo: "/flag/repo", data: "/file/data", httpPort: 2222, mqttPort: 1883, mqttWsPort: 8083, host: "::1", mqttUrl: null, mqttDynsec: false, db: null, brokerRedis: null, repoUrl: null, autoAccept: false, enrollmentSecretFile: null, adminToken: "env-token-0123456789", signingKey: null, limits: DEFAULT_LIMITS, tls: { dir: "/file/data/tls", create: true },
    });
    expect(resolveServeSettings({ mqttPort: "1884" }, { APT_OSTREE_AUTO_ACCEPT: "1" }, { mqttPort: 1999 })).toMatchObject({ mqttPort: 1884, autoAccept: true });
    expect(resolveServeSettings({}, {}, { mqttPort: 1999, autoAccept: true })).toMatchObject({ mqttPort: 1999, autoAccept: true });
    expect(resolveServeSettings({ mqttWsPort: "off" }, {}, { mqttWsPort: 9001 }).mqttWsPort).toBeNull();
    expect(resolveServeSettings({}, {}, { mqttWsPort: 9001 }).mqttWsPort).toBe(9001);
    expect(resolveServeSettings({ httpPort: "3333" }, env, file).httpPort).toBe(3333);
    expect(resolveServeSettings({ enrollmentSecretFile: "/flag/secret" }, { APT_OSTREE_ENROLLMENT_SECRET_FILE: "/env/secret" }, {}).enrollmentSecretFile).toBe("/flag/secret");
    expect(resolveServeSettings({}, { APT_OSTREE_ENROLLMENT_SECRET_FILE: "/env/secret" }, { enrollmentSecretFile: "/file/secret" }).enrollmentSecretFile).toBe("/env/secret");
    expect(resolveServeSettings({}, {}, {})).toEqual({ ...SERVE_DEFAULTS, mqttUrl: null, mqttDynsec: false, db: null, brokerRedis: null, repoUrl: null, enrollmentSecretFile: null, adminToken: null, signingKey: null, limits: DEFAULT_LIMITS, tls: { dir: `${SERVE_DEFAULTS.data}/tls`, create: true } });
  });

  it("takes the PostgreSQL URL from --db, APT_OSTREE_DB or the file, and refuses anything else with the reason", () => {
    expect(resolveServeSettings({ db: "postgres://a@h/x" }, { APT_OSTREE_DB: "postgresql://b@h/y" }, {}).db).toBe("postgres://a@h/x");
    expect(resolveServeSettings({}, { APT_OSTREE_DB: "postgresql://b@h/y" }, { db: "postgres://c@h/z" }).db).toBe("postgresql://b@h/y");
    expect(resolveServeSettings({}, {}, { db: "postgres://c@h/z" }).db).toBe("postgres://c@h/z");
    expect(() => resolveServeSettings({ db: "/var/lib/fleet.db" }, {}, {})).toThrow(/--db \(APT_OSTREE_DB, db\) must be a postgres:\/\/ URL/);
  });

  it("takes the static host devices fetch the repo from (--repo-url, APT_OSTREE_REPO_URL, repoUrl), without a trailing slash; refuses anything but http(s)", () => {
    expect(resolveServeSettings({ repoUrl: "https://cdn.example/repo/" }, { APT_OSTREE_REPO_URL: "http://b/repo" }, {}).repoUrl).toBe("https://cdn.example/repo");
    expect(resolveServeSettings({}, { APT_OSTREE_REPO_URL: "http://b/repo" }, { repoUrl: "http://c/repo" }).repoUrl).toBe("http://b/repo");
    expect(resolveServeSettings({}, {}, { repoUrl: "http://c/repo" }).repoUrl).toBe("http://c/repo");
    expect(() => resolveServeSettings({ repoUrl: "ftp://c/repo" }, {}, {})).toThrow(/--repo-url \(APT_OSTREE_REPO_URL, repoUrl\) must be an http:\/\/ or https:\/\/ URL/);
  });

  it("takes the Redis that joins the brokers from --broker-redis, APT_OSTREE_BROKER_REDIS or the file; refuses another scheme, and an external broker beside it", () => {
    expect(resolveServeSettings({ brokerRedis: "redis://a:6379/1" }, { APT_OSTREE_BROKER_REDIS: "redis://b:6379" }, {}).brokerRedis).toBe("redis://a:6379/1");
    expect(resolveServeSettings({}, { APT_OSTREE_BROKER_REDIS: "rediss://b:6379" }, { brokerRedis: "redis://c" }).brokerRedis).toBe("rediss://b:6379");
    expect(resolveServeSettings({}, {}, { brokerRedis: "redis://c" }).brokerRedis).toBe("redis://c");
    expect(() => resolveServeSettings({ brokerRedis: "c:6379" }, {}, {})).toThrow(/--broker-redis \(APT_OSTREE_BROKER_REDIS, brokerRedis\) must be a redis:\/\/ URL/);
    expect(() => resolveServeSettings({ brokerRedis: "redis://c", mqttUrl: "mqtt://m" }, {}, {})).toThrow(/use one or the other/);
  });

  it.each([
    ["nothing set: TLS from DATA/tls, made on first start", {}, {}, {}, { dir: "/d/tls", create: true }],
    ["--tls-dir", { tlsDir: "/flag/tls" }, {}, {}, { dir: "/flag/tls", create: false }],
    ["--insecure-plain", { insecurePlain: true }, {}, {}, null],
    ["APT_OSTREE_TLS_DIR", {}, { APT_OSTREE_TLS_DIR: "/env/tls" }, {}, { dir: "/env/tls", create: false }],
    ["APT_OSTREE_INSECURE_PLAIN=1", {}, { APT_OSTREE_INSECURE_PLAIN: "1" }, {}, null],
    ["APT_OSTREE_INSECURE_PLAIN=0 is not a request for plain ports", {}, { APT_OSTREE_INSECURE_PLAIN: "0" }, {}, { dir: "/d/tls", create: true }],
    ["tlsDir in the config file", {}, {}, { tlsDir: "/file/tls" }, { dir: "/file/tls", create: false }],
    ["insecurePlain in the config file", {}, {}, { insecurePlain: true }, null],
    ["a flag's TLS dir over the environment's plain ports", { tlsDir: "/flag/tls" }, { APT_OSTREE_INSECURE_PLAIN: "1" }, {}, { dir: "/flag/tls", create: false }],
    ["the environment's plain ports over the file's TLS dir", {}, { APT_OSTREE_INSECURE_PLAIN: "1" }, { tlsDir: "/file/tls" }, null],
    ["--insecure-plain over the file's TLS dir", { insecurePlain: true }, {}, { tlsDir: "/file/tls" }, null],
  ])("TLS or plain ports: %s", (_name, flags, env, file, tls) => {
    expect(resolveServeSettings({ data: "/d", ...flags }, env, file).tls).toEqual(tls);
  });

  it.each([
    [{ tlsDir: "/t", insecurePlain: true }, {}, {}, /--tls-dir and --insecure-plain contradict each other/],
    [{}, { APT_OSTREE_TLS_DIR: "/t", APT_OSTREE_INSECURE_PLAIN: "1" }, {}, /APT_OSTREE_TLS_DIR and APT_OSTREE_INSECURE_PLAIN contradict each other/],
    [{}, {}, { tlsDir: "/t", insecurePlain: true }, /tlsDir and insecurePlain in the config file contradict each other/],
  ])("refuses a TLS dir and plain ports asked for in one place", (flags, env, file, message) => {
    expect(() => resolveServeSettings(flags, env, file)).toThrow(message);
  });

  it.each([
    [{ httpPort: "80x" }, {}, /--http-port: '80x' is not a TCP port/],
    [{}, { APT_OSTREE_HTTP_PORT: "70000" }, /APT_OSTREE_HTTP_PORT: '70000' is not a TCP port/],
    [{}, { APT_OSTREE_ADMIN_TOKEN: "short" }, /at least 16 characters/],
  ])("rejects bad values, naming where they came from", (flags, env, message) => {
    expect(() => resolveServeSettings(flags, env, {})).toThrow(message);
  });

  it("reads a YAML config file and names unknown keys", async () => {
    const good = join(dir, "good.yaml");
    await writeFile(good, "httpPort: 9000\nrepo: /srv/repo\n");
    expect(await readConfigFile(good)).toEqual({ httpPort: 9000, repo: "/srv/repo" });
    const bad = join(dir, "bad.yaml");
    await writeFile(bad, "httpport: 9000\n");
    await expect(readConfigFile(bad)).rejects.toThrow(ConfigError);
    await expect(readConfigFile(bad)).rejects.toThrow(/bad\.yaml: httpport: unknown key/);
  });
});
