/**
 * The ristretto255 prime-order group (RFC 9496) over `@noble/curves`: canonical scalars and
 * elements.
 *
 * {@link Scalar} and {@link Element} can only hold canonical, validated encodings, so once a
 * value has one of these types it is safe to compute with. Decoding rejects what RFC 9496
 * §4.3.1 and pakr reject: a wrong length, a scalar >= L, an element with the top bit of byte
 * 31 set or any other non-canonical encoding, and the identity (never a valid key, blinded
 * element, evaluation or share). Every failure is a {@link MalformedMessage}.
 */
import { ristretto255, ristretto255_hasher } from "@noble/curves/ed25519.js";
import { equal } from "./bytes.js";
import { MalformedMessage } from "./errors.js";

type Point = InstanceType<typeof ristretto255.Point>;
const RistrettoPoint = ristretto255.Point;

/** The prime order L of the ristretto255 group. */
export const ORDER: bigint = 2n ** 252n + 27742317777372353535851937790883648493n;
export const SCALAR_LEN = 32;
export const ELEMENT_LEN = 32;

function leToBigint(data: Uint8Array): bigint {
  let v = 0n;
  for (let i = data.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i] as number);
  return v;
}

function bigintToLe(value: bigint, length = SCALAR_LEN): Uint8Array {
  const out = new Uint8Array(length);
  let v = value;
  for (let i = 0; i < length; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function mod(a: bigint): bigint {
  const r = a % ORDER;
  return r < 0n ? r + ORDER : r;
}

/** Modular inverse by Fermat (L is prime); callers exclude zero. */
function invertMod(a: bigint): bigint {
  let result = 1n;
  let base = mod(a);
  let e = ORDER - 2n;
  while (e > 0n) {
    if (e & 1n) result = (result * base) % ORDER;
    base = (base * base) % ORDER;
    e >>= 1n;
  }
  return result;
}

/**
 * A canonical little-endian scalar mod L. Scalars are often secret (keys, shares, blinds): the
 * string form never shows the value and {@link Scalar.equals} compares in constant time.
 */
export class Scalar {
  readonly encoded: Uint8Array;
  /** @internal the value as an integer mod L */
  readonly value: bigint;

  private constructor(encoded: Uint8Array, value: bigint) {
    this.encoded = encoded;
    this.value = value;
    Object.freeze(this);
  }

  /**
   * Parse a scalar read off the wire or from storage: `MalformedMessage` on a wrong length,
   * a non-canonical encoding (>= L), or zero unless `allowZero`.
   */
  static decode(data: Uint8Array, options: { allowZero?: boolean } = {}): Scalar {
    if (!(data instanceof Uint8Array)) throw new MalformedMessage("a scalar must be bytes");
    if (data.length !== SCALAR_LEN) throw new MalformedMessage(`a scalar must be ${SCALAR_LEN} bytes`);
    const value = leToBigint(data);
    if (value >= ORDER) throw new MalformedMessage("scalar encoding is not canonical (>= group order)");
    if (value === 0n && !options.allowZero) throw new MalformedMessage("scalar must not be zero");
    return new Scalar(Uint8Array.from(data), value);
  }

  /** A uniformly random non-zero scalar from the platform CSPRNG. */
  static random(): Scalar {
    for (;;) {
      const wide = new Uint8Array(64);
      crypto.getRandomValues(wide);
      const s = Scalar.reduce(wide);
      if (!s.isZero()) return s;
    }
  }

  /** A scalar from a public integer (Shamir indices, small constants), reduced mod L. */
  static fromInt(value: number | bigint): Scalar {
    const v = mod(BigInt(value));
    return new Scalar(bigintToLe(v), v);
  }

  /** Reduce 64 uniform bytes mod L (RFC 9497 HashToScalar); the result may be zero. */
  static reduce(wide: Uint8Array): Scalar {
    if (wide.length !== 64) throw new RangeError("Scalar.reduce needs exactly 64 bytes");
    return Scalar.fromInt(leToBigint(wide));
  }

  add(other: Scalar): Scalar {
    return Scalar.fromInt(this.value + other.value);
  }

  sub(other: Scalar): Scalar {
    return Scalar.fromInt(this.value - other.value);
  }

  mul(other: Scalar): Scalar {
    return Scalar.fromInt(this.value * other.value);
  }

  neg(): Scalar {
    return Scalar.fromInt(-this.value);
  }

  /** The multiplicative inverse mod L; `MalformedMessage` for zero (it has none). */
  invert(): Scalar {
    if (this.isZero()) throw new MalformedMessage("cannot invert the zero scalar");
    return Scalar.fromInt(invertMod(this.value));
  }

  isZero(): boolean {
    return this.value === 0n;
  }

  equals(other: Scalar): boolean {
    return equal(this.encoded, other.encoded);
  }

  toString(): string {
    return "Scalar(<redacted>)";
  }

  toJSON(): string {
    return "Scalar(<redacted>)";
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return "Scalar(<redacted>)";
  }
}

/** A canonical ristretto255 encoding of a group element other than the identity. */
export class Element {
  readonly encoded: Uint8Array;
  /** @internal */
  readonly point: Point;

  private constructor(encoded: Uint8Array, point: Point) {
    this.encoded = encoded;
    this.point = point;
    Object.freeze(this);
  }

  /**
   * Parse an element off the wire: wrong length, invalid, non-canonical (top bit included)
   * or identity encodings raise `MalformedMessage`.
   */
  static decode(data: Uint8Array): Element {
    if (!(data instanceof Uint8Array)) throw new MalformedMessage("a group element must be bytes");
    if (data.length !== ELEMENT_LEN) throw new MalformedMessage(`a group element must be ${ELEMENT_LEN} bytes`);
    if ((data[31] as number) & 0x80) throw new MalformedMessage("non-canonical ristretto255 encoding (top bit set)");
    if (data.every((b) => b === 0)) throw new MalformedMessage("group element is the identity");
    let point: Point;
    try {
      point = RistrettoPoint.fromBytes(data);
    } catch {
      throw new MalformedMessage("invalid or non-canonical ristretto255 encoding");
    }
    const encoded = Uint8Array.from(data);
    if (!equal(point.toBytes(), encoded)) throw new MalformedMessage("invalid or non-canonical ristretto255 encoding");
    return new Element(encoded, point);
  }

  /** @internal wrap a computed point; the identity is refused. */
  static fromPoint(point: Point): Element {
    if (point.is0()) throw new MalformedMessage("group operation yields the identity element");
    return new Element(point.toBytes(), point);
  }

  /** The ristretto255 generator G. */
  static generator(): Element {
    return GENERATOR;
  }

  /** k·G; `MalformedMessage` if k is zero. */
  static baseMult(k: Scalar): Element {
    if (k.isZero()) throw new MalformedMessage("base multiplication yields the identity element");
    return Element.fromPoint(RistrettoPoint.BASE.multiply(k.value));
  }

  /** Map 64 uniform bytes to an element (RFC 9496 §4.3.4 derivation: no hashing inside). */
  static fromUniformBytes(data: Uint8Array): Element {
    if (data.length !== 64) throw new RangeError("Element.fromUniformBytes needs exactly 64 bytes");
    return Element.fromPoint(ristretto255_hasher.deriveToCurve!(data));
  }

  /** k·self; `MalformedMessage` if the result is the identity (k zero). */
  mul(k: Scalar): Element {
    if (k.isZero()) throw new MalformedMessage("scalar multiplication yields the identity element");
    return Element.fromPoint(this.point.multiply(k.value));
  }

  add(other: Element): Element {
    return Element.fromPoint(this.point.add(other.point));
  }

  sub(other: Element): Element {
    return Element.fromPoint(this.point.subtract(other.point));
  }

  equals(other: Element): boolean {
    return equal(this.encoded, other.encoded);
  }
}

const GENERATOR = Element.fromPoint(RistrettoPoint.BASE);
