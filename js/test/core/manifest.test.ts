// Manifests signed by the Python SDK (fixtures/manifests.json, from
// scripts/gen-manifest-fixture.py) verify here; TypeScript's canonical bytes give the same
// Ed25519 signature; every tampering and every shape rule is refused with a ConfigError.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { ConfigError } from "../../src/core/errors.js";
import * as m from "../../src/core/manifest.js";
import { SigningKey } from "../../src/core/tokens.js";
import { hex } from "./helpers.js";

const fixture = JSON.parse(readFileSync(new URL("./fixtures/manifests.json", import.meta.url), "utf8"));
const operator = new SigningKey("operator", 1, Uint8Array.from({ length: 32 }, (_, i) => i));
const pin = fixture.operator_public_key as string;
const now = fixture.now as number;
const copy = <T>(v: T): T => structuredClone(v);

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function resigned(mutate: (body: Record<string, any>) => void): Record<string, unknown> {
  const body = copy(fixture.production.manifest);
  mutate(body);
  return m.signManifest(body, operator);
}

describe("manifest", () => {
  it("verifies the Python-signed production and dev manifests", () => {
    const prod = m.loadManifest(fixture.production, { operatorKey: pin, now });
    assert.equal(prod.clusterId, "prod-ü-\u2028-\u{1f511}");
    assert.equal(prod.serial, 7);
    assert.equal(prod.threshold, 2);
    assert.equal(prod.registerThreshold, 3);
    assert.deepEqual(prod.argon2, { memoryKib: 65536, iterations: 3, parallelism: 1 });
    assert.equal(prod.nodes.length, 3);
    assert.equal(prod.nodes[0]!.webOrigin, "https://node1.example:8443");
    assert.equal(prod.nodes[0]!.address, "node1.example:7001");
    assert.equal(hex(prod.nodes[0]!.tlsCertSha256 ?? new Uint8Array()), "");
    assert.equal(hex(m.certFingerprint(prod.nodes[0]!.tlsCertPem!)), fixture.cert_sha256);
    assert.equal(prod.nodes[0]!.hpkePublicKey!.encoded.length, 1216);
    assert.equal(prod.previousConfigurations[0]!.nodes[0]!.webOrigin, null);
    assert.equal(hex(prod.previousConfigurations[0]!.nodes[0]!.tlsCertSha256!), fixture.cert_sha256);
    const dev = m.loadManifest(JSON.stringify(fixture.dev), { operatorKey: m.INSECURE_UNPINNED, now });
    assert.ok(dev.dev && dev.nodes.every((n) => n.insecure && n.webOrigin!.startsWith("http://127.0.0.1:")));
  });

  it("canonical bytes give Python's exact signature", () => {
    for (const doc of [fixture.production, fixture.dev]) {
      assert.equal((m.signManifest(doc.manifest, operator).signature as { value: string }).value, doc.signature.value);
    }
  });

  it("key order and whitespace do not matter", () => {
    const body = fixture.production.manifest;
    const reversed = Object.fromEntries(Object.entries(body).reverse());
    const text = JSON.stringify({ signature: fixture.production.signature, manifest: reversed }, null, 3);
    assert.equal(m.loadManifest(text, { operatorKey: pin, now }).serial, 7);
  });

  it("refuses tampering, another operator, no pin, expiry and rollback", () => {
    const tampered = copy(fixture.production);
    tampered.manifest.threshold = 3;
    assert.throws(() => m.loadManifest(tampered, { operatorKey: pin, now }), /signature is invalid/);
    const other = SigningKey.generate("operator");
    const byOther = m.signManifest(fixture.production.manifest, other);
    assert.throws(() => m.loadManifest(byOther, { operatorKey: pin, now }), /different operator key/);
    assert.equal(m.loadManifest(byOther, { operatorKey: other.publicKeyText, now }).serial, 7);
    assert.throws(() => m.loadManifest(fixture.production, { now }), /no operator key pinned/);
    assert.throws(() => m.loadManifest(fixture.production, { operatorKey: pin, now: 4e9 }), /expired/);
    assert.throws(() => m.loadManifest(fixture.production, { operatorKey: pin, now, minSerial: 8 }), /rollback/);
    assert.equal(m.loadManifest(fixture.production, { operatorKey: pin, now, minSerial: 7 }).serial, 7);
    const badSig = copy(fixture.production);
    badSig.signature.value = "!!!";
    assert.throws(() => m.loadManifest(badSig, { operatorKey: pin, now }), /base64url/);
    assert.throws(() => m.loadManifest("{not json", { operatorKey: pin, now }), /not valid JSON/);
    assert.throws(() => m.loadManifest([], { operatorKey: pin, now }), /not a JSON object/);
    assert.throws(() => m.loadManifest({ manifest: {} }, { operatorKey: pin, now }), /'manifest' and a 'signature'/);
  });

  it("shape rules", () => {
    const cases: [string, (b: Record<string, any>) => void, RegExp][] = [
      ["threshold too low", (b) => (b.threshold = 1), /threshold 1 must exceed half|threshold 1 is allowed only/],
      ["r below t", (b) => (b.register_threshold = 1), /register_threshold 1 must be in 2..3/],
      ["duplicate index", (b) => (b.nodes[1].index = b.nodes[0].index), /indices must be unique/],
      ["duplicate id", (b) => (b.nodes[1].id = b.nodes[0].id), /ids must be unique/],
      ["uppercase id", (b) => (b.nodes[0].id = b.nodes[0].id.toUpperCase()), /lowercase hex/],
      ["index 0", (b) => (b.nodes[0].index = 0), /index 0 must be in 1..255/],
      ["no port", (b) => (b.nodes[0].address = "node1.example"), /host:port/],
      ["weak argon2", (b) => (b.argon2.memory_kib = 1024), /memory_kib=1024 is below the floor/],
      ["no hpke key", (b) => delete b.nodes[0].hpke_public_key, /no hpke_public_key/],
      ["bad hpke key", (b) => (b.nodes[0].hpke_public_key = "AAAA"), /1216 bytes/],
      ["unpinned node", (b) => (b.nodes[0].tls_cert = null), /pins no TLS certificate/],
      ["wrong fingerprint", (b) => (b.nodes[0].tls_cert_sha256 = "00".repeat(32)), /does not match/],
      ["not a cert", (b) => (b.nodes[0].tls_cert = "hello"), /not a PEM certificate/],
      ["not a cert inside", (b) => (b.nodes[0].tls_cert = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"), /not a PEM certificate/],
      ["http origin in production", (b) => (b.nodes[0].web_origin = "http://node1.example:8080"), /plain http/],
      ["origin with path", (b) => (b.nodes[0].web_origin = "https://node1.example/x"), /must be an origin/],
      ["origin default port", (b) => (b.nodes[0].web_origin = "https://node1.example:443"), /no default port/],
      ["origin uppercase", (b) => (b.nodes[0].web_origin = "https://Node1.example:8443"), /lowercase/],
      ["origin user info", (b) => (b.nodes[0].web_origin = "https://u@node1.example"), /must be an origin/],
      ["dev null", (b) => (b.dev = null), /dev must be true or false/],
      ["format", (b) => (b.format = "pakr-manifest/2"), /format must be/],
      ["float serial", (b) => (b.serial = 7.5), /serial must be an integer/],
      ["previous not a list", (b) => (b.previous_configurations = {}), /must be a list/],
      ["expires before issued", (b) => (b.expires_at = b.issued_at), /expires_at must be after/],
    ];
    for (const [name, mutate, pattern] of cases) {
      assert.throws(() => m.loadManifest(resigned(mutate), { operatorKey: pin, now }), (e: unknown) => {
        assert.ok(e instanceof ConfigError, `${name}: ${String(e)}`);
        assert.match((e as Error).message, pattern, name);
        return true;
      });
    }
    assert.equal(m.loadManifest(resigned((b) => (b.nodes[0].web_origin = "https://[::1]:8443")), { operatorKey: pin, now }).nodes[0]!.webOrigin, "https://[::1]:8443");
    assert.equal(m.loadManifest(resigned((b) => (b.future_field = { x: [1, "ü"] })), { operatorKey: pin, now }).serial, 7);
  });
});
