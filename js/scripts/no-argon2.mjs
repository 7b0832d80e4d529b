// Stand-in for hash-wasm in a size-only build (build-web.mjs --without-argon2): refuses to run.
export async function argon2id() {
  throw new Error("this bundle was built without Argon2id (size measurement only)");
}
