/**
 * `npm run build:device`: bundles apt-ostreed and apt-ostree with esbuild for Node 18, Debian
 * bookworm's nodejs, with no node_modules beside them (the image installs the whole folder with
 * the systemd units):
 *  - dist/apt-ostreed.cjs, the agent, one CommonJS file: an ES module entry would make Node load
 *    its ESM loader (0.4 MiB more resident on an idle agent on Node 20, 1.9 on Debian's Node 18;
 *    docs/agent.md "Memory"); undici, reached only through `import()` on the first download, is
 *    dist/lib/http-client.cjs, loaded then with a V8 code cache (device/update/code-cache.ts);
 *  - dist/apt-ostree.mjs, the CLI, an ES module with its shared chunks under dist/lib/.
 */
import { mkdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { build, type BuildOptions, type Plugin } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
export const DIST = `${root}dist`;
export const AGENT_BUNDLE = "apt-ostreed.cjs";
export const CLI_BUNDLE = "apt-ostree.mjs";
const HTTP_CLIENT = "lib/http-client.cjs";

const common: BuildOptions = {
  bundle: true,
  platform: "node",
  target: "node18",
  minify: true,
  legalComments: "linked",
  logLevel: "warning",
  metafile: true,
};

/** The agent's `import("./http-client.ts")` becomes `require("./lib/http-client.cjs")`, the separately bundled file. */
const httpClientApart: Plugin = {
  name: "http-client-apart",
  setup(plugin) {
    plugin.onResolve({ filter: /\/http-client\.ts$/ }, () => ({ path: `./${HTTP_CLIENT}`, external: true }));
  },
};

/**
 * undici loads node:http2, and with it tls and http's server side, as it starts, for HTTP/2 that
 * the agent never asks for (undici's allowH2 is off). undici falls back when node:http2 is
 * missing (client-h2.js), so in the HTTP client's bundle it is missing: ~8 ms less before an
 * update's first request.
 */
const withoutHttp2: Plugin = {
  name: "without-http2",
  setup(plugin) {
    plugin.onResolve({ filter: /^node:http2$/ }, () => ({ path: "node:http2", namespace: "without-http2" }));
    plugin.onLoad({ filter: /.*/, namespace: "without-http2" }, () => ({ contents: 'throw new Error("node:http2 is left out of the agent\'s HTTP client");', loader: "js" }));
  },
};

/**
 * pino loads its worker-thread transports (thread-stream, node:worker_threads) and sonic-boom
 * loads node:assert as they start; the agent logs to stderr synchronously and never starts a
 * transport or a worker. In the agent's bundle the transport module throws when called,
 * worker_threads says this is the main thread, and assert is a plain check: ~0.35 MiB less
 * resident on an idle agent on Node 20 (docs/agent.md "Memory").
 */
const leanPino: Plugin = {
  name: "lean-pino",
  setup(plugin) {
    const stubs: Record<string, string> = {
      transport: 'module.exports = () => { throw new Error("pino transports are left out of the agent\'s bundle"); };',
      worker_threads: "module.exports = { isMainThread: true };",
      assert: 'module.exports = (value, message) => { if (!value) throw new Error(message ?? "assertion failed"); };',
    };
    plugin.onResolve({ filter: /^\.\/(lib\/)?transport$/ }, (args) => (/[\\/]pino[\\/]/.test(args.importer) ? { path: "transport", namespace: "lean-pino" } : undefined));
    plugin.onResolve({ filter: /^(node:)?(worker_threads|assert)$/ }, (args) => (/[\\/]node_modules[\\/](pino|sonic-boom)[\\/]/.test(args.importer) ? { path: args.path.replace("node:", ""), namespace: "lean-pino" } : undefined));
    plugin.onLoad({ filter: /.*/, namespace: "lean-pino" }, (args) => ({ contents: stubs[args.path], loader: "js" }));
  },
};

export async function bundleDevice(outdir = DIST): Promise<string[]> {
  await rm(`${outdir}/lib`, { recursive: true, force: true });
  await mkdir(outdir, { recursive: true });
  const results = await Promise.all([
    build({
      ...common,
      entryPoints: [`${root}device/agent/main.ts`],
      outfile: `${outdir}/${AGENT_BUNDLE}`,
      format: "cjs",
      // import() of the external client and of node:tls as require(): no ESM loader in the agent.
      supported: { "dynamic-import": false },
      // The HTTP client's file beside the bundle, loaded with a V8 code cache (load-http-client.ts).
      define: { AGENT_HTTP_CLIENT: JSON.stringify(HTTP_CLIENT) },
      banner: { js: "#!/usr/bin/env node" },
      plugins: [httpClientApart, leanPino],
    }),
    build({ ...common, entryPoints: [`${root}device/update/http-client.ts`], outfile: `${outdir}/${HTTP_CLIENT}`, format: "cjs", plugins: [withoutHttp2] }),
    build({
      ...common,
      entryPoints: { "apt-ostree": `${root}device/cli.ts` },
      outdir,
      outExtension: { ".js": ".mjs" },
      format: "esm",
      // CommonJS dependencies (pino) call require(): give the ESM bundle one.
      banner: { js: "#!/usr/bin/env node\nimport { createRequire as __aptOstreeRequire } from 'node:module'; const require = __aptOstreeRequire(import.meta.url);" },
      splitting: true,
      chunkNames: "lib/[name]-[hash]",
    }),
  ]);
  return results.flatMap((result) => Object.keys(result.metafile!.outputs)).filter((f) => /\.(c|m)js$/.test(f));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const file of await bundleDevice()) process.stdout.write(`${file}\n`);
}
