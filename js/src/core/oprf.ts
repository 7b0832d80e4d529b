/**
 * RFC 9497 (V)OPRF, suite ristretto255-SHA512, modes OPRF (0x00) and VOPRF (0x01), over
 * `@noble/curves` (RFC 9380 expand_message_xmd and hash_to_ristretto255) and
 * `@noble/hashes` (SHA-512). Checked byte for byte against the RFC's vectors.
 *
 * The VOPRF proof is split out (`generateProof`/`verifyProof`) so a threshold node can prove
 * its own share `K_i = k_i·G` and the client can verify each node's evaluation on its own
 * (docs/protocol.md §4). Proofs are `c ‖ s`, 64 bytes.
 */
import { expand_message_xmd } from "@noble/curves/abstract/hash-to-curve.js";
import { ristretto255_hasher } from "@noble/curves/ed25519.js";
import { sha512 } from "@noble/hashes/sha2.js";
import { concat, i2osp } from "./bytes.js";
import { MalformedMessage } from "./errors.js";
import { Element, SCALAR_LEN, Scalar } from "./group.js";

/** RFC 9497 §3.1 protocol modes (POPRF is not used by pakr). */
export enum Mode {
  OPRF = 0,
  VOPRF = 1,
}

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);
const IDENTIFIER = ascii("ristretto255-SHA512");

function lp(data: Uint8Array): Uint8Array {
  return concat(i2osp(data.length, 2), data);
}

/** RFC 9497 §3.1: `"OPRFV1-" || I2OSP(mode, 1) || "-" || identifier`. */
export function contextString(mode: Mode): Uint8Array {
  return concat(ascii("OPRFV1-"), Uint8Array.of(mode), ascii("-"), IDENTIFIER);
}

/** RFC 9380 §5.3.1 expand_message_xmd with SHA-512 (from `@noble/curves`). */
export function expandMessageXmd(msg: Uint8Array, dst: Uint8Array, lenInBytes: number): Uint8Array {
  return expand_message_xmd(msg, dst, lenInBytes, sha512);
}

/** RFC 9497 §4.1 HashToGroup; `MalformedMessage` if the input maps to the identity. */
export function hashToGroup(msg: Uint8Array, mode: Mode = Mode.VOPRF): Element {
  const dst = concat(ascii("HashToGroup-"), contextString(mode));
  return Element.fromPoint(ristretto255_hasher.hashToCurve(msg, { DST: dst }));
}

/** RFC 9497 §4.1 HashToScalar: 64 expanded bytes reduced mod L (may be zero). */
export function hashToScalar(msg: Uint8Array, mode: Mode = Mode.VOPRF, dst?: Uint8Array): Scalar {
  const tag = dst ?? concat(ascii("HashToScalar-"), contextString(mode));
  return Scalar.reduce(expandMessageXmd(msg, tag, 64));
}

/** A key pair: the secret scalar and its public element. */
export interface KeyPair {
  readonly secretKey: Scalar;
  readonly publicKey: Element;
}

/** RFC 9497 §3.2.1 DeriveKeyPair (DST `"DeriveKeyPair" || ctx`, no dash): for the RFC vectors. */
export function deriveKeyPair(seed: Uint8Array, info: Uint8Array, mode: Mode = Mode.VOPRF): KeyPair {
  if (seed.length !== SCALAR_LEN) throw new RangeError("DeriveKeyPair seed must be 32 bytes");
  const deriveInput = concat(seed, lp(info));
  const dst = concat(ascii("DeriveKeyPair"), contextString(mode));
  for (let counter = 0; counter < 256; counter++) {
    const sk = hashToScalar(concat(deriveInput, i2osp(counter, 1)), mode, dst);
    if (!sk.isZero()) return { secretKey: sk, publicKey: Element.baseMult(sk) };
  }
  throw new MalformedMessage("DeriveKeyPairError: no non-zero scalar after 256 attempts");
}

/** A DLEQ proof `(c, s)` (RFC 9497 §2.2), encoded as 64 bytes `c || s`. */
export class Proof {
  readonly c: Scalar;
  readonly s: Scalar;

  constructor(c: Scalar, s: Scalar) {
    this.c = c;
    this.s = s;
    Object.freeze(this);
  }

  encode(): Uint8Array {
    return concat(this.c.encoded, this.s.encoded);
  }

  /** `MalformedMessage` on a wrong length or a non-canonical scalar (zero is accepted; it just fails to verify). */
  static decode(data: Uint8Array): Proof {
    if (!(data instanceof Uint8Array) || data.length !== 2 * SCALAR_LEN) {
      throw new MalformedMessage(`a proof must be ${2 * SCALAR_LEN} bytes`);
    }
    return new Proof(
      Scalar.decode(data.subarray(0, SCALAR_LEN), { allowZero: true }),
      Scalar.decode(data.subarray(SCALAR_LEN), { allowZero: true }),
    );
  }
}

/** The result of {@link blind}. */
export interface Blinded {
  readonly blind: Scalar;
  readonly blindedElement: Element;
}

/** RFC 9497 §3.3.1 Blind; the blind is random unless given (tests only). */
export function blind(input: Uint8Array, options: { blind?: Scalar; mode?: Mode } = {}): Blinded {
  const r = options.blind ?? Scalar.random();
  if (r.isZero()) throw new RangeError("the blind must be non-zero");
  return { blind: r, blindedElement: hashToGroup(input, options.mode ?? Mode.VOPRF).mul(r) };
}

/** RFC 9497 §3.3.1 BlindEvaluate: `sk · blinded` (the proof is made separately). */
export function blindEvaluate(sk: Scalar, blinded: Element): Element {
  return blinded.mul(sk);
}

function seedOf(B: Element, mode: Mode): Uint8Array {
  const seedDst = concat(ascii("Seed-"), contextString(mode));
  return sha512(concat(lp(B.encoded), lp(seedDst)));
}

function compositeWeights(B: Element, C: readonly Element[], D: readonly Element[], mode: Mode): Scalar[] {
  if (C.length !== D.length || C.length === 0) throw new RangeError("C and D must be non-empty and of equal length");
  if (C.length > 0xffff) throw new RangeError("batch too large");
  const seed = seedOf(B, mode);
  const composite = ascii("Composite");
  return C.map((ci, i) =>
    hashToScalar(concat(lp(seed), i2osp(i, 2), lp(ci.encoded), lp((D[i] as Element).encoded), composite), mode),
  );
}

function weightedSum(weights: readonly Scalar[], elements: readonly Element[]): Element {
  let total: Element | undefined;
  weights.forEach((w, i) => {
    const term = (elements[i] as Element).mul(w);
    total = total === undefined ? term : total.add(term);
  });
  if (total === undefined) throw new RangeError("empty weighted sum");
  return total;
}

function challenge(B: Element, M: Element, Z: Element, t2: Element, t3: Element, mode: Mode): Scalar {
  return hashToScalar(
    concat(lp(B.encoded), lp(M.encoded), lp(Z.encoded), lp(t2.encoded), lp(t3.encoded), ascii("Challenge")),
    mode,
  );
}

/**
 * RFC 9497 §2.2.1 GenerateProof (ComputeCompositesFast): proves `B = k·A` and `D[i] = k·C[i]`.
 * `r` is the proof nonce, random unless given (vectors only: a repeated r reveals k).
 */
export function generateProof(
  k: Scalar,
  A: Element,
  B: Element,
  C: readonly Element[],
  D: readonly Element[],
  options: { r?: Scalar; mode?: Mode } = {},
): Proof {
  const mode = options.mode ?? Mode.VOPRF;
  const weights = compositeWeights(B, C, D, mode);
  const M = weightedSum(weights, C);
  const Z = M.mul(k);
  const nonce = options.r ?? Scalar.random();
  const t2 = A.mul(nonce);
  const t3 = M.mul(nonce);
  const c = challenge(B, M, Z, t2, t3, mode);
  return new Proof(c, nonce.sub(c.mul(k)));
}

function mulAllowZero(e: Element, k: Scalar): Element | null {
  return k.isZero() ? null : e.mul(k);
}

/**
 * RFC 9497 §2.2.2 VerifyProof over a batch. False on any mismatch; never throws for well-typed
 * inputs (a degenerate proof or composite that hits the identity is a mismatch).
 */
export function verifyProof(
  A: Element,
  B: Element,
  C: readonly Element[],
  D: readonly Element[],
  proof: Proof,
  mode: Mode = Mode.VOPRF,
): boolean {
  try {
    const weights = compositeWeights(B, C, D, mode);
    const M = weightedSum(weights, C);
    const Z = weightedSum(weights, D);
    const sA = mulAllowZero(A, proof.s);
    const cB = mulAllowZero(B, proof.c);
    const sM = mulAllowZero(M, proof.s);
    const cZ = mulAllowZero(Z, proof.c);
    if (sA === null || cB === null || sM === null || cZ === null) return false;
    const t2 = sA.add(cB);
    const t3 = sM.add(cZ);
    return challenge(B, M, Z, t2, t3, mode).equals(proof.c);
  } catch (error) {
    if (error instanceof MalformedMessage || error instanceof RangeError) return false;
    throw error;
  }
}

function output(input: Uint8Array, element: Element): Uint8Array {
  return sha512(concat(lp(input), lp(element.encoded), ascii("Finalize")));
}

/** RFC 9497 §3.3.1 Finalize: unblind and hash; 64-byte output (verify the proof first). */
export function finalize(input: Uint8Array, blindScalar: Scalar, evaluated: Element): Uint8Array {
  return output(input, evaluated.mul(blindScalar.invert()));
}

/** RFC 9497 §3.3.2 Evaluate: the unblinded computation (registration, where the client holds k). */
export function evaluate(sk: Scalar, input: Uint8Array, mode: Mode = Mode.VOPRF): Uint8Array {
  return output(input, hashToGroup(input, mode).mul(sk));
}
