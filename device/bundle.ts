/**
 * `npm run build:device`: bundles apt-ostreed and apt-ostree with esbuild into one entry file
 * each (dist/apt-ostreed.mjs, dist/apt-ostree.mjs) plus shared chunks under dist/lib/, that run
 * on Node 18, Debian bookworm's nodejs, with no node_modules beside them: the image installs the
 * whole folder with the systemd units. Code reached only through `import()` (undici, on the
 * first download) is its own chunk, so the idle agent never parses it (docs/agent.md).
 */
import { mkdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
export const DIST = `${root}dist`;

export async function bundleDevice(outdir = DIST): Promise<string[]> {
  await rm(`${outdir}/lib`, { recursive: true, force: true });
  await mkdir(outdir, { recursive: true });
  const entries = { "apt-ostreed": `${root}device/agent/main.ts`, "apt-ostree": `${root}device/cli.ts` };
  const result = await build({
    entryPoints: entries,
    outdir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    target: "node18",
    format: "esm",
    minify: true,
    legalComments: "linked",
    logLevel: "warning",
    // CommonJS dependencies (mqtt, pino) call require(): give the ESM bundle one.
    banner: { js: "#!/usr/bin/env node\nimport { createRequire as __aptOstreeRequire } from 'node:module'; const require = __aptOstreeRequire(import.meta.url);" },
    metafile: true,
    splitting: true,
    chunkNames: "lib/[name]-[hash]",
  });
  return Object.keys(result.metafile.outputs).filter((f) => f.endsWith(".mjs"));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const file of await bundleDevice()) process.stdout.write(`${file}\n`);
}
