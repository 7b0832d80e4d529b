// TypeScript SDK figures, each next to a same-run baseline:
//  * bundle size (esbuild, minified, gzip -9) of the browser SDK with and without hash-wasm's
//    Argon2 WebAssembly, and of the protocol core alone;
//  * Argon2id at the default 64 MiB, t=3, p=1: hash-wasm (WebAssembly, what the SDK uses) vs
//    @noble/hashes' pure-JS argon2id, as a ratio (medians, interleaved runs).
// Run: `cd js && npm run bench` (or `make bench`). Options: --rounds N (default 3).
import { argon2id as pureArgon2id } from "@noble/hashes/argon2.js";
import { build } from "esbuild";
import { argon2id as wasmArgon2id } from "hash-wasm";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";

const js = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" } } });
const rounds = Number(values.rounds);

const withoutArgon2 = {
  name: "no-argon2-wasm",
  setup(b) {
    b.onResolve({ filter: /^hash-wasm$/ }, () => ({ path: "hash-wasm", namespace: "stub" }));
    b.onLoad({ filter: /.*/, namespace: "stub" }, () => ({
      contents: "export async function argon2id() { throw new Error('Argon2 left out of this bundle'); }",
    }));
  },
};

async function size(entry, plugins = []) {
  const result = await build({
    entryPoints: [join(js, entry)],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    write: false,
    plugins,
    logLevel: "error",
  });
  const bytes = result.outputFiles[0].contents;
  return { raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
}

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const full = await size("src/index.ts");
const lean = await size("src/index.ts", [withoutArgon2]);
const core = await size("src/core/index.ts");
console.log("bundle (esbuild --minify, gzip -9)          raw        gzip");
console.log(`  SDK (browser entry), with Argon2 WASM   ${kib(full.raw).padStart(10)} ${kib(full.gzip).padStart(10)}`);
console.log(`  SDK without the Argon2 WASM             ${kib(lean.raw).padStart(10)} ${kib(lean.gzip).padStart(10)}`);
console.log(`  protocol core alone (pakr/core)         ${kib(core.raw).padStart(10)} ${kib(core.gzip).padStart(10)}`);
console.log(`  Argon2 WASM share of the gzipped SDK: ${(((full.gzip - lean.gzip) / full.gzip) * 100).toFixed(0)} %`);

const password = new TextEncoder().encode("correct horse battery staple");
const salt = new Uint8Array(32).fill(7);
const params = { m: 65536, t: 3, p: 1 };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const wasm = [];
const pure = [];
await wasmArgon2id({ password, salt, iterations: 1, parallelism: 1, memorySize: 1024, hashLength: 64, outputType: "binary" });
for (let i = 0; i < rounds; i++) {
  let t0 = performance.now();
  const a = await wasmArgon2id({ password, salt, iterations: params.t, parallelism: params.p, memorySize: params.m, hashLength: 64, outputType: "binary" });
  wasm.push(performance.now() - t0);
  t0 = performance.now();
  const b = pureArgon2id(password, salt, { ...params, dkLen: 64 });
  pure.push(performance.now() - t0);
  if (Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0) throw new Error("hash-wasm and @noble/hashes disagree");
}
console.log(`Argon2id 64 MiB, t=3, p=1 (median of ${rounds}, Node.js ${process.version})`);
console.log(`  hash-wasm (WebAssembly)    ${median(wasm).toFixed(0).padStart(6)} ms`);
console.log(`  @noble/hashes (pure JS)    ${median(pure).toFixed(0).padStart(6)} ms`);
console.log(`  pure JS / WASM ratio       ${(median(pure) / median(wasm)).toFixed(1).padStart(6)} x`);
