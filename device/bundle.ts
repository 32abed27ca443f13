/**
 * `npm run build:device`: bundles apt-ostreed and apt-ostree with esbuild into one file each
 * (dist/apt-ostreed.mjs, dist/apt-ostree.mjs) that run on Node 18, Debian bookworm's nodejs,
 * with no node_modules beside them: what the image recipe installs with the systemd units.
 */
import { mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
export const DIST = `${root}dist`;

export async function bundleDevice(outdir = DIST): Promise<string[]> {
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
  });
  return Object.keys(result.metafile.outputs).filter((f) => f.endsWith(".mjs"));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const file of await bundleDevice()) process.stdout.write(`${file}\n`);
}
