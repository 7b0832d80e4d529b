// Bundle examples/web (plain TypeScript) with esbuild: dist/app.js + dist/index.html.
//   node scripts/build-web.mjs --operator-key ed25519:... [--outdir DIR] [--metafile FILE] [--entry FILE]
// The operator key is pinned into the bundle, as a production app would ship it.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const js = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const web = resolve(js, "..", "examples", "web");
const { values } = parseArgs({
  options: {
    "operator-key": { type: "string" },
    outdir: { type: "string", default: join(web, "dist") },
    metafile: { type: "string" },
    entry: { type: "string", default: join(web, "app.ts") },
    // Measure the bundle without the Argon2id WebAssembly (hash-wasm replaced by a stub that
    // refuses): what the SDK costs apart from the KDF. The result cannot recover anything.
    "without-argon2": { type: "boolean", default: false },
  },
});
if (!values["operator-key"]?.startsWith("ed25519:")) {
  console.error("build-web: --operator-key ed25519:... is required (the key pinned into the bundle)");
  process.exit(2);
}
mkdirSync(values.outdir, { recursive: true });
const result = await build({
  entryPoints: [resolve(values.entry)],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outfile: join(values.outdir, "app.js"),
  alias: {
    pakr: join(js, "src", "index.ts"),
    ...(values["without-argon2"] ? { "hash-wasm": join(js, "scripts", "no-argon2.mjs") } : {}),
  },
  nodePaths: [join(js, "node_modules")],
  define: { PAKR_OPERATOR_KEY: JSON.stringify(values["operator-key"]) },
  metafile: Boolean(values.metafile),
  logLevel: "warning",
});
copyFileSync(join(web, "index.html"), join(values.outdir, "index.html"));
// Bundle size for the record: minified, and minified + gzip (bench/web_recover.py reports it).
const bytes = readFileSync(join(values.outdir, "app.js"));
writeFileSync(join(values.outdir, "size.json"), JSON.stringify({ minified: bytes.length, gzip: gzipSync(bytes).length }));
if (values.metafile) writeFileSync(values.metafile, JSON.stringify(result.metafile));
console.log(join(values.outdir, "index.html"));
