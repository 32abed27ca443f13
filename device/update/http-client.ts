/**
 * undici's `request`, behind a module of our own so callers can `import()` it: the idle agent
 * never loads undici (~400 KiB of code), and the static import here lets esbuild give the lazy
 * chunk undici's named exports (a dynamic import of the CommonJS package itself yields only a
 * default export once bundled with code splitting).
 */
export { request } from "undici";
