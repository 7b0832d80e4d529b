// RFC 9497 ristretto255-SHA512 vectors (OPRF and VOPRF modes, batch sizes 1 and 2), value by value.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Element, Scalar } from "../../src/core/group.js";
import * as oprf from "../../src/core/oprf.js";
import { h, hex, vectors } from "./helpers.js";

const rfc = vectors("rfc9497-ristretto255-sha512.json");
const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);

let checked = 0;
describe("RFC 9497 ristretto255-SHA512", () => {
  for (const suite of rfc.suites) {
    const mode = suite.mode as oprf.Mode;
    it(`${suite.modeName}: DeriveKeyPair`, () => {
      const { secretKey, publicKey } = oprf.deriveKeyPair(h(suite.Seed), h(suite.KeyInfo), mode);
      assert.equal(hex(secretKey.encoded), suite.skSm);
      if (suite.pkSm) assert.equal(hex(publicKey.encoded), suite.pkSm);
      checked++;
    });
    for (const v of suite.vectors) {
      it(`${suite.modeName}: ${v.name}`, () => {
        const sk = Scalar.decode(h(suite.skSm));
        const inputs = list<string>(v.Input).map(h);
        const blinds = list<string>(v.Blind);
        const blinded = list<string>(v.BlindedElement);
        const evaluated = list<string>(v.EvaluationElement);
        const outputs = list<string>(v.Output);
        const Cs: Element[] = [];
        const Ds: Element[] = [];
        inputs.forEach((input, i) => {
          const r = oprf.blind(input, { blind: Scalar.decode(h(blinds[i] as string)), mode });
          assert.equal(hex(r.blindedElement.encoded), blinded[i]);
          const z = oprf.blindEvaluate(sk, r.blindedElement);
          assert.equal(hex(z.encoded), evaluated[i]);
          assert.equal(hex(oprf.finalize(input, r.blind, z)), outputs[i]);
          assert.equal(hex(oprf.evaluate(sk, input, mode)), outputs[i]);
          Cs.push(r.blindedElement);
          Ds.push(z);
          checked += 4;
        });
        if (mode === oprf.Mode.VOPRF) {
          const pk = Element.decode(h(suite.pkSm));
          const proof = oprf.generateProof(sk, Element.generator(), pk, Cs, Ds, {
            r: Scalar.decode(h(v.ProofRandomScalar)),
            mode,
          });
          assert.equal(hex(proof.encode()), v.Proof);
          assert.ok(oprf.verifyProof(Element.generator(), pk, Cs, Ds, oprf.Proof.decode(h(v.Proof)), mode));
          // A proof for another key, or another batch order, must not verify.
          const other = oprf.deriveKeyPair(new Uint8Array(32).fill(7), h(suite.KeyInfo), mode).publicKey;
          assert.ok(!oprf.verifyProof(Element.generator(), other, Cs, Ds, proof, mode));
          if (Cs.length > 1) assert.ok(!oprf.verifyProof(Element.generator(), pk, Cs, [...Ds].reverse(), proof, mode));
          checked += 2;
        }
      });
    }
  }
  it("checked every value", () => assert.ok(checked >= 30, `${checked}`));
});

describe("RFC 9380 expand_message_xmd (SHA-512)", () => {
  it("Appendix K.3", async () => {
    const { readFileSync } = await import("node:fs");
    const k3 = JSON.parse(readFileSync(new URL("./fixtures/rfc9380-expand-xmd-sha512.json", import.meta.url), "utf8"));
    const dst = new TextEncoder().encode(k3.dst);
    assert.equal(k3.vectors.length, 10);
    for (const v of k3.vectors) {
      assert.equal(hex(oprf.expandMessageXmd(new TextEncoder().encode(v.msg), dst, v.len_in_bytes)), v.uniform_bytes);
    }
  });
});
