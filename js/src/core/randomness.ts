/**
 * Injectable randomness, so every protocol step is reproducible in tests. Production code
 * uses {@link SYSTEM} (WebCrypto's `getRandomValues`); the vector replay uses
 * {@link DeterministicRandomness}, the same SHAKE256 stream as the Python SDK's, never for
 * real keys.
 */
import { shake256 } from "@noble/hashes/sha3.js";
import { concat } from "./bytes.js";
import { Scalar } from "./group.js";

/** Where a protocol step draws its random bytes and scalars. */
export interface Randomness {
  bytes(n: number): Uint8Array;
  /** A uniformly random non-zero scalar. */
  scalar(): Scalar;
}

/** The platform CSPRNG (browsers and Node.js alike). */
export class SystemRandomness implements Randomness {
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    // getRandomValues fills at most 65536 bytes per call.
    for (let at = 0; at < n; at += 65536) crypto.getRandomValues(out.subarray(at, Math.min(n, at + 65536)));
    return out;
  }

  scalar(): Scalar {
    return Scalar.random();
  }
}

/** A SHAKE256 stream from a seed: reproducible test vectors, never real keys. */
export class DeterministicRandomness implements Randomness {
  private readonly xof: ReturnType<typeof shake256.create>;

  constructor(seed: Uint8Array) {
    this.xof = shake256.create({}).update(concat(new TextEncoder().encode("pakr/v1/test-randomness\x00"), seed));
  }

  bytes(n: number): Uint8Array {
    return this.xof.xof(n);
  }

  scalar(): Scalar {
    for (;;) {
      const s = Scalar.reduce(this.bytes(64));
      if (!s.isZero()) return s;
    }
  }
}

export const SYSTEM: Randomness = new SystemRandomness();
