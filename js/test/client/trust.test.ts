import assert from "node:assert/strict";
import { mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ConfigError } from "../../src/core/errors.js";
import { FileSerialState } from "../../src/client/node.js";
import { serialStateFromStorage } from "../../src/client/trust.js";
import { TokenCache, tokenExpiry } from "../../src/client/tokens.js";

describe("serial state", () => {
  it("a storage-backed state only moves up", async () => {
    const store = new Map<string, string>();
    const state = serialStateFromStorage((k) => store.get(k) ?? null, (k, v) => void store.set(k, v));
    assert.equal(await state.highest("ed25519:a"), 0);
    await state.record("ed25519:a", 5);
    await state.record("ed25519:a", 3);
    assert.equal(await state.highest("ed25519:a"), 5);
  });

  it("the file is 0600, in the Python SDK's format, and damage is an error", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pakr-serials-"));
    const path = join(dir, "sub", "serials.json");
    const state = new FileSerialState(path);
    await state.record("ed25519:k", 7);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const doc = JSON.parse(await readFile(path, "utf8"));
    assert.deepEqual(doc, { format: "pakr-manifest-serials/1", serials: { "ed25519:k": 7 } });
    assert.equal(await new FileSerialState(path).highest("ed25519:k"), 7);
    await writeFile(path, "{not json");
    await assert.rejects(state.highest("ed25519:k"), ConfigError);
  });
});

describe("tokens", () => {
  const jwt = (claims: object) =>
    `e30.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;

  it("caches a token until shortly before it expires", () => {
    const cache = new TokenCache();
    const now = Date.now() / 1000;
    cache.put("alice", "aa", jwt({ exp: now + 300 }));
    assert.ok(cache.get("alice", "aa"));
    cache.put("bob", "aa", jwt({ exp: now + 10 }));
    assert.equal(cache.get("bob", "aa"), null);
    cache.forget("alice", "aa");
    assert.equal(cache.get("alice", "aa"), null);
    assert.equal(tokenExpiry("garbage"), null);
  });
});
