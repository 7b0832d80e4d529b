// Argon2id (RFC 9106 §5.3 through the pure-JS reference; the WASM implementation pakr uses
// must give the same bytes), the Argon2 floor and ceiling, MAC/TupleHash framing, and the
// HPKE public-key checks the Python SDK's library makes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { argon2id as pureArgon2id } from "@noble/hashes/argon2.js";
import { WeakParameters } from "../../src/core/errors.js";
import { MalformedMessage } from "../../src/core/errors.js";
import { HpkePrivateKey, HpkePublicKey } from "../../src/core/hpke.js";
import * as kdf from "../../src/core/kdf.js";
import * as seal from "../../src/core/seal.js";
import { h, hex, vectors } from "./helpers.js";

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

describe("Argon2id", () => {
  it("RFC 9106 §5.3 (secret and associated data: pure-JS reference)", () => {
    for (const v of vectors("rfc9106-argon2id.json").vectors) {
      const tag = pureArgon2id(h(v.password), h(v.salt), {
        t: v.iterations,
        m: v.memory_kib,
        p: v.parallelism,
        dkLen: v.tag_length,
        key: h(v.secret),
        personalization: h(v.associated_data),
        version: v.version,
      });
      assert.equal(hex(tag), v.tag);
    }
  });

  it("the WASM implementation equals the reference", async () => {
    for (const params of [
      { memoryKib: 32, iterations: 3, parallelism: 4 },
      { memoryKib: 64, iterations: 1, parallelism: 1 },
      { memoryKib: 1024, iterations: 2, parallelism: 2 },
    ]) {
      const password = ascii("pässwörd");
      const salt = new Uint8Array(16).fill(2);
      const wasm = await kdf.argon2id(password, salt, params, 64);
      const pure = pureArgon2id(password, salt, { t: params.iterations, m: params.memoryKib, p: params.parallelism, dkLen: 64 });
      assert.equal(hex(wasm), hex(pure));
    }
  });

  it("refuses what Argon2 cannot run", async () => {
    await assert.rejects(kdf.argon2id(ascii("x"), new Uint8Array(7), kdf.DEV_ARGON2), RangeError);
    await assert.rejects(kdf.argon2id(ascii("x"), new Uint8Array(8), { memoryKib: 7, iterations: 1, parallelism: 1 }), RangeError);
  });

  it("floor and ceiling name the field and bound", () => {
    kdf.checkArgon2(kdf.DEFAULT_ARGON2);
    kdf.checkArgon2(kdf.ARGON2_FLOOR);
    kdf.checkArgon2(kdf.ARGON2_CEILING);
    assert.throws(() => kdf.checkArgon2({ ...kdf.ARGON2_FLOOR, memoryKib: 19455 }), {
      name: "WeakParameters",
      message: "argon2 memory_kib=19455 is below the floor 19456",
    });
    assert.throws(() => kdf.checkArgon2({ ...kdf.ARGON2_FLOOR, iterations: 65 }), /iterations=65 is above the ceiling 64/);
    assert.throws(() => kdf.checkArgon2({ ...kdf.ARGON2_FLOOR, parallelism: 17 }), WeakParameters);
    assert.throws(() => kdf.checkArgon2({ ...kdf.ARGON2_FLOOR, parallelism: 1.5 }), /must be an integer/);
  });
});

describe("hashes and MACs", () => {
  it("MAC fields are length-framed: (ab, c) and (a, bc) differ", () => {
    const key = new Uint8Array(32).fill(1);
    const label = ascii("pakr/v1/test");
    assert.notEqual(hex(kdf.mac(key, label, ascii("ab"), ascii("c"))), hex(kdf.mac(key, label, ascii("a"), ascii("bc"))));
    assert.notEqual(hex(kdf.tupleHash(label, ascii("ab"), ascii("c"))), hex(kdf.tupleHash(label, ascii("a"), ascii("bc"))));
    assert.throws(() => kdf.mac(new Uint8Array(31), label), RangeError);
  });

  it("fixed-length inputs are checked", () => {
    assert.throws(() => kdf.registrationSalt("t", "u", new Uint8Array(15)), MalformedMessage);
    assert.throws(() => kdf.unlockTag(new Uint8Array(32), new Uint8Array(17)), MalformedMessage);
    assert.throws(() => kdf.u64(-1), RangeError);
    assert.throws(() => kdf.u64(2n ** 64n), RangeError);
    assert.equal(hex(kdf.u64(2n ** 64n - 1n)), "ffffffffffffffff");
  });
});

describe("secret sealing", () => {
  it("pads to one length, refuses bad padding and oversize secrets", () => {
    assert.equal(seal.pad(new Uint8Array(0)).length, seal.PADDED_LEN);
    assert.equal(seal.pad(new Uint8Array(128)).length, seal.PADDED_LEN);
    assert.throws(() => seal.pad(new Uint8Array(129)), { name: "ConfigError" });
    const padded = seal.pad(Uint8Array.of(1, 2, 3));
    padded[10] = 1;
    assert.throws(() => seal.unpad(padded), /non-zero padding/);
    const key = new Uint8Array(32).fill(9);
    const ct = seal.encryptSecret(key, Uint8Array.of(7), ascii("ad"));
    assert.equal(ct.length, seal.CIPHERTEXT_LEN);
    assert.equal(hex(seal.decryptSecret(key, ct, ascii("ad"))), "07");
    assert.throws(() => seal.decryptSecret(key, ct, ascii("other")), /failed authentication/);
  });
});

describe("HPKE keys", () => {
  it("refuse an ML-KEM key with a coefficient >= q (as the Python SDK does)", async () => {
    const good = (await HpkePrivateKey.fromSeed(new Uint8Array(32))).public.encoded;
    const bad = Uint8Array.from(good);
    bad[0] = 0xff;
    bad[1]! |= 0x0f;
    assert.throws(() => HpkePublicKey.decode(bad), /not a valid X-Wing public key/);
    assert.throws(() => HpkePublicKey.decode(good.subarray(1)), /1216 bytes/);
    assert.equal(hex(HpkePublicKey.fromText(HpkePublicKey.decode(good).text).encoded), hex(good));
  });

  it("a ciphertext opens only under its own info", async () => {
    const key = await HpkePrivateKey.generate();
    const ct = await key.public.seal(ascii("hello"), ascii("info-a"));
    assert.equal(new TextDecoder().decode(await key.open(ct, ascii("info-a"), "x")), "hello");
    await assert.rejects(key.open(ct, ascii("info-b"), "sealed_share"), /sealed_share does not decrypt/);
    await assert.rejects(key.open(ct.subarray(0, 100), ascii("info-a"), "x"), /too short/);
    assert.equal(String(key), "HpkePrivateKey(<redacted>)");
  });
});
