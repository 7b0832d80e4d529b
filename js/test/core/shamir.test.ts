// Shamir sharing over Z_L and Lagrange in the exponent (properties), and the access tokens
// the TypeScript core mints (EdDSA JWT as the Python SDK's nodes verify them).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ed25519 } from "@noble/curves/ed25519.js";
import fc from "fast-check";
import { fromBase64Url } from "../../src/core/bytes.js";
import { ConfigError, MalformedMessage } from "../../src/core/errors.js";
import { Element, ORDER, Scalar } from "../../src/core/group.js";
import * as m from "../../src/core/manifest.js";
import * as shamir from "../../src/core/shamir.js";
import { SigningKey, issueToken, parsePublicKey } from "../../src/core/tokens.js";

const setup = fc
  .integer({ min: 1, max: 7 })
  .chain((n) =>
    fc.record({
      n: fc.constant(n),
      t: fc.integer({ min: 1, max: n }),
      indices: fc.uniqueArray(fc.integer({ min: 1, max: 255 }), { minLength: n, maxLength: n }),
      secret: fc.bigInt({ min: 1n, max: ORDER - 1n }),
      pick: fc.array(fc.nat(), { minLength: n, maxLength: n }),
    }),
  );

describe("shamir", () => {
  it("any t shares give the secret, in the exponent too", () => {
    fc.assert(
      fc.property(setup, ({ t, indices, secret, pick }) => {
        const s = Scalar.fromInt(secret);
        const shares = shamir.split(s, t, indices);
        const order = indices.map((i, k) => [pick[k]!, i] as const).sort((a, b) => a[0] - b[0]).map(([, i]) => i);
        const chosen = new Map(order.slice(0, t).map((i) => [i, shares.get(i)!]));
        assert.ok(shamir.reconstruct(chosen, t).equals(s));
        const inExponent = new Map([...chosen].map(([i, share]) => [i, Element.baseMult(share)]));
        assert.ok(shamir.combineElements(inExponent, t).equals(Element.baseMult(s)));
      }),
      { numRuns: 40 },
    );
  });

  it("bad share sets are MalformedMessage, bad split calls RangeError", () => {
    const shares = shamir.split(Scalar.fromInt(5), 2, [1, 2, 3]);
    assert.throws(() => shamir.reconstruct(new Map([[1, shares.get(1)!]]), 2), /too few shares/);
    assert.throws(() => shamir.lagrangeCoefficients([1, 1]), MalformedMessage);
    assert.throws(() => shamir.lagrangeCoefficients([0, 1]), MalformedMessage);
    assert.throws(() => shamir.lagrangeCoefficients([256]), MalformedMessage);
    assert.throws(() => shamir.split(Scalar.fromInt(5), 4, [1, 2, 3]), RangeError);
    assert.throws(() => shamir.split(Scalar.fromInt(5), 1, [1, 1]), RangeError);
  });
});

describe("tokens", () => {
  it("an EdDSA JWT for one node, signed with the tenant's key", () => {
    const key = new SigningKey("acme", 2, new Uint8Array(32).fill(4));
    const token = issueToken(key, { userId: "alice", audience: "ab".repeat(16), now: 1_800_000_000, jti: "j" });
    const [header, claims, signature] = token.split(".") as [string, string, string];
    assert.deepEqual(JSON.parse(new TextDecoder().decode(fromBase64Url(header))), { alg: "EdDSA", typ: "JWT", kid: "acme:2" });
    assert.deepEqual(JSON.parse(new TextDecoder().decode(fromBase64Url(claims))), {
      iss: "acme",
      sub: "alice",
      aud: "ab".repeat(16),
      scope: "user",
      iat: 1_800_000_000,
      nbf: 1_800_000_000,
      exp: 1_800_000_300,
      jti: "j",
    });
    assert.ok(ed25519.verify(fromBase64Url(signature), new TextEncoder().encode(`${header}.${claims}`), key.publicKey));
    assert.deepEqual(parsePublicKey(key.publicKeyText), key.publicKey);
    assert.throws(() => issueToken(key, { userId: "u", audience: "x", scope: "admin" }), ConfigError);
    assert.throws(() => issueToken(key, { userId: "u", audience: "x", ttl: 86401 }), ConfigError);
    assert.throws(() => issueToken(key, { userId: "u".repeat(900), audience: "x" }), /exceed 1,000 bytes/);
    assert.equal(String(key), "SigningKey(acme:2)");
    assert.equal(SigningKey.fromDocument({ format: "pakr-key/1", name: "acme", number: 2, private_key: "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ", public_key: key.publicKeyText }).kid, "acme:2");
    assert.throws(() => SigningKey.fromDocument({ format: "pakr-key/1", name: "acme", number: 2, private_key: "BAQE" }), /32 bytes/);
  });
});

describe("manifest parser", () => {
  it("any JSON raises only ConfigError", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (body, signature) => {
        try {
          m.loadManifest({ manifest: body, signature }, { operatorKey: m.INSECURE_UNPINNED });
          assert.fail("an arbitrary document verified");
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
        }
      }),
      { numRuns: 300 },
    );
  });
});
