// ristretto255 scalars and elements: RFC 9496 Appendix A, the canonical-decoding rules pakr
// adds (top bit, identity, scalar >= L, zero), and property tests (fast-check) that decoders
// reject garbage with MalformedMessage and nothing else.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import fc from "fast-check";
import { MalformedMessage } from "../../src/core/errors.js";
import { ELEMENT_LEN, Element, ORDER, Scalar } from "../../src/core/group.js";
import { h, hex } from "./helpers.js";

const rfc = JSON.parse(readFileSync(new URL("./fixtures/rfc9496-ristretto255.json", import.meta.url), "utf8"));
const le = (v: bigint): Uint8Array => {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = Number((v >> BigInt(8 * i)) & 0xffn);
  return out;
};
const scalarArb = fc.bigInt({ min: 1n, max: ORDER - 1n }).map((v) => Scalar.fromInt(v));
const malformedOnly = (f: () => unknown): void => {
  try {
    f();
  } catch (error) {
    if (!(error instanceof MalformedMessage)) throw error;
  }
};

describe("RFC 9496 ristretto255", () => {
  it("A.1: multiples of the generator encode as in the RFC", () => {
    assert.equal(rfc.multiples.length, 16);
    assert.throws(() => Element.decode(h(rfc.multiples[0])), MalformedMessage); // the identity
    for (let k = 1; k < 16; k++) {
      assert.equal(hex(Element.baseMult(Scalar.fromInt(k)).encoded), rfc.multiples[k]);
      assert.ok(Element.decode(h(rfc.multiples[k])).equals(Element.baseMult(Scalar.fromInt(k))));
    }
    assert.equal(hex(Element.generator().encoded), rfc.multiples[1]);
  });

  it("A.2: every invalid encoding is refused with MalformedMessage", () => {
    let n = 0;
    for (const list of Object.values(rfc.invalid) as string[][]) {
      for (const bad of list) {
        assert.throws(() => Element.decode(h(bad)), MalformedMessage, bad);
        n++;
      }
    }
    assert.equal(n, 29);
  });

  it("A.3: element derivation from 64 uniform bytes", () => {
    for (const [input, output] of rfc.derivation) assert.equal(hex(Element.fromUniformBytes(h(input)).encoded), output);
  });
});

describe("canonical decoding", () => {
  it("refuses the top bit, the identity and its disguise", () => {
    const g = Element.generator().encoded;
    const top = Uint8Array.from(g);
    top[31]! |= 0x80;
    assert.throws(() => Element.decode(top), /top bit/);
    assert.throws(() => Element.decode(new Uint8Array(32)), /identity/);
    const disguised = new Uint8Array(32);
    disguised[31] = 0x80;
    assert.throws(() => Element.decode(disguised), MalformedMessage);
  });

  it("refuses scalars >= L and zero unless allowed", () => {
    assert.throws(() => Scalar.decode(le(ORDER)), /canonical/);
    assert.throws(() => Scalar.decode(new Uint8Array(32).fill(0xff)), /canonical/);
    assert.ok(Scalar.decode(le(ORDER - 1n)).equals(Scalar.fromInt(-1)));
    assert.throws(() => Scalar.decode(new Uint8Array(32)), /zero/);
    assert.ok(Scalar.decode(new Uint8Array(32), { allowZero: true }).isZero());
  });

  it("refuses wrong lengths", () => {
    for (const n of [0, 1, 31, 33, 64]) {
      assert.throws(() => Element.decode(new Uint8Array(n)), MalformedMessage);
      assert.throws(() => Scalar.decode(new Uint8Array(n)), MalformedMessage);
    }
  });

  it("identity results raise MalformedMessage", () => {
    assert.throws(() => Element.baseMult(Scalar.fromInt(0)), MalformedMessage);
    assert.throws(() => Element.generator().mul(Scalar.fromInt(ORDER)), MalformedMessage);
    assert.throws(() => Element.generator().sub(Element.generator()), MalformedMessage);
    assert.throws(() => Scalar.fromInt(0).invert(), MalformedMessage);
  });

  it("never shows a scalar's value", () => {
    const s = Scalar.fromInt(123456789);
    assert.equal(String(s), "Scalar(<redacted>)");
    assert.equal(JSON.stringify({ s }), '{"s":"Scalar(<redacted>)"}');
  });
});

describe("properties", () => {
  it("decoders raise only MalformedMessage on any bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 70 }), (data) => {
        malformedOnly(() => Element.decode(data));
        malformedOnly(() => Scalar.decode(data));
      }),
      { numRuns: 500 },
    );
  });

  it("32-byte inputs: an accepted element re-encodes to itself", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: ELEMENT_LEN, maxLength: ELEMENT_LEN }), (data) => {
        try {
          assert.equal(hex(Element.decode(data).encoded), hex(data));
        } catch (error) {
          if (!(error instanceof MalformedMessage)) throw error;
        }
      }),
      { numRuns: 500 },
    );
  });

  it("valid elements round-trip and their top-bit twin is refused", () => {
    fc.assert(
      fc.property(scalarArb, (k) => {
        const e = Element.baseMult(k);
        assert.ok(Element.decode(e.encoded).equals(e));
        const twin = Uint8Array.from(e.encoded);
        twin[31]! |= 0x80;
        assert.throws(() => Element.decode(twin), MalformedMessage);
      }),
      { numRuns: 50 },
    );
  });

  it("scalar field and group laws", () => {
    fc.assert(
      fc.property(scalarArb, scalarArb, scalarArb, (a, b, c) => {
        assert.ok(a.add(b).equals(b.add(a)));
        assert.ok(a.mul(b.add(c)).equals(a.mul(b).add(a.mul(c))));
        assert.ok(a.mul(a.invert()).equals(Scalar.fromInt(1)));
        assert.ok(a.sub(b).add(b).equals(a));
        assert.ok(Scalar.decode(a.encoded).equals(a));
        if (!a.add(b).isZero()) {
          assert.ok(Element.baseMult(a).add(Element.baseMult(b)).equals(Element.baseMult(a.add(b))));
        }
        assert.ok(Element.baseMult(a).mul(b).equals(Element.baseMult(a.mul(b))));
      }),
      { numRuns: 30 },
    );
  });
});
