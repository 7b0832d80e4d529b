/**
 * End-to-end encryption of share-bearing fields with HPKE (RFC 9180), base mode, single shot,
 * over `@hpke/core` with `@hpke/hybridkem-x-wing` and `@hpke/chacha20poly1305`.
 *
 * Suite (the same as the Python SDK's): KEM X-Wing (ML-KEM-768 + X25519, KEM id 0x647a),
 * HKDF-SHA256, ChaCha20-Poly1305. A private key is X-Wing's 32-byte seed, expanded by X-Wing
 * itself (SHAKE256) into the ML-KEM-768 and X25519 keys, so every X-Wing implementation derives
 * the same key pair from it. Public keys are `pk_ML-KEM (1184) || pk_X25519 (32)`; a ciphertext
 * is `enc (1120) || ct`. The `info` of every encryption is a TupleHash over the message's context,
 * so a ciphertext opens only for the user, version, node and step it was made for.
 *
 * HPKE here is asynchronous (the library runs on WebCrypto's promise-based API).
 */
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import { CipherSuite, HkdfSha256 } from "@hpke/core";
import { XWing } from "@hpke/hybridkem-x-wing";
import { concat, fromBase64Url, toBase64Url, utf8 } from "./bytes.js";
import { MalformedMessage } from "./errors.js";
import * as kdf from "./kdf.js";
import type { UserRef } from "./messages.js";

export const SEED_LEN = 32;
export const MLKEM_PUBLIC_LEN = 1184;
export const X25519_LEN = 32;
export const PUBLIC_KEY_LEN = MLKEM_PUBLIC_LEN + X25519_LEN; // 1216
export const ENC_LEN = 1120;
export const TAG_LEN = 16;
export const SUITE_NAME = "X-Wing(ML-KEM-768+X25519) / HKDF-SHA256 / ChaCha20-Poly1305";

const KEM = new XWing();
const SUITE = new CipherSuite({ kem: KEM, kdf: new HkdfSha256(), aead: new Chacha20Poly1305() });

const ML_KEM_Q = 3329;

/**
 * FIPS 203 §7.2 encapsulation-key check: every 12-bit coefficient of the ML-KEM key's t̂ part
 * is below q (the X-Wing library does not check it; the Python SDK's library refuses such keys).
 */
function mlkemKeyIsCanonical(pk: Uint8Array): boolean {
  const polyBytes = MLKEM_PUBLIC_LEN - 32;
  for (let i = 0; i < polyBytes; i += 3) {
    const b0 = pk[i] as number;
    const b1 = pk[i + 1] as number;
    const b2 = pk[i + 2] as number;
    if ((b0 | ((b1 & 0x0f) << 8)) >= ML_KEM_Q || ((b1 >> 4) | (b2 << 4)) >= ML_KEM_Q) return false;
  }
  return true;
}

/** An X-Wing public key (1216 bytes), checked on construction. */
export class HpkePublicKey {
  readonly encoded: Uint8Array;

  private constructor(encoded: Uint8Array) {
    this.encoded = encoded;
    Object.freeze(this);
  }

  /** Parse `pk_M || pk_X`; `MalformedMessage` when it is not one. */
  static decode(raw: Uint8Array, what = "hpke public key"): HpkePublicKey {
    if (!(raw instanceof Uint8Array) || raw.length !== PUBLIC_KEY_LEN) {
      throw new MalformedMessage(`${what} must be ${PUBLIC_KEY_LEN} bytes, got ${raw instanceof Uint8Array ? raw.length : 0}`);
    }
    if (!mlkemKeyIsCanonical(raw.subarray(0, MLKEM_PUBLIC_LEN))) {
      throw new MalformedMessage(`${what} is not a valid X-Wing public key`);
    }
    return new HpkePublicKey(Uint8Array.from(raw));
  }

  /** Parse the unpadded base64url form (manifests, `hpke.pub`). */
  static fromText(text: string, what = "hpke public key"): HpkePublicKey {
    return HpkePublicKey.decode(fromBase64Url(text, what), what);
  }

  /** Unpadded base64url, as manifests and `hpke.pub` hold it. */
  get text(): string {
    return toBase64Url(this.encoded);
  }

  /** `enc || ct`: `plaintext` encrypted to this key under `info`. */
  async seal(plaintext: Uint8Array, info: Uint8Array): Promise<Uint8Array> {
    const recipientPublicKey = await KEM.deserializePublicKey(this.encoded);
    const { ct, enc } = await SUITE.seal({ recipientPublicKey, info }, plaintext);
    return concat(new Uint8Array(enc), new Uint8Array(ct));
  }
}

/** An X-Wing private key, kept as its 32-byte seed (never shown). */
export class HpkePrivateKey {
  readonly seed: Uint8Array;
  readonly public: HpkePublicKey;

  private constructor(seed: Uint8Array, publicKey: HpkePublicKey) {
    this.seed = seed;
    this.public = publicKey;
    Object.freeze(this);
  }

  /** The key pair X-Wing derives from `seed`. */
  static async fromSeed(seed: Uint8Array): Promise<HpkePrivateKey> {
    if (!(seed instanceof Uint8Array) || seed.length !== SEED_LEN) {
      throw new MalformedMessage(`an hpke private key is a ${SEED_LEN}-byte seed`);
    }
    const pair = await KEM.generateKeyPairDerand(Uint8Array.from(seed));
    const publicRaw = new Uint8Array(await KEM.serializePublicKey(pair.publicKey));
    return new HpkePrivateKey(Uint8Array.from(seed), HpkePublicKey.decode(publicRaw));
  }

  /** A fresh random key pair. */
  static async generate(): Promise<HpkePrivateKey> {
    const seed = new Uint8Array(SEED_LEN);
    crypto.getRandomValues(seed);
    return HpkePrivateKey.fromSeed(seed);
  }

  /** Decrypt `enc || ct`; `MalformedMessage` naming `what` when it does not open. */
  async open(ciphertext: Uint8Array, info: Uint8Array, what: string): Promise<Uint8Array> {
    if (ciphertext.length < ENC_LEN + TAG_LEN) throw new MalformedMessage(`${what} is too short to be an HPKE ciphertext`);
    try {
      const recipientKey = await KEM.importKey("raw", Uint8Array.from(this.seed).buffer, false);
      const plaintext = await SUITE.open(
        { recipientKey, enc: ciphertext.slice(0, ENC_LEN), info },
        ciphertext.slice(ENC_LEN),
      );
      return new Uint8Array(plaintext);
    } catch {
      throw new MalformedMessage(`${what} does not decrypt: sealed to another key or for another request`);
    }
  }

  toString(): string {
    return "HpkePrivateKey(<redacted>)";
  }

  toJSON(): string {
    return "HpkePrivateKey(<redacted>)";
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return "HpkePrivateKey(<redacted>)";
  }
}

function fixedLen(value: Uint8Array, length: number): Uint8Array {
  if (value.length !== length) throw new RangeError(`expected ${length} bytes, got ${value.length}`);
  return value;
}

/** HPKE `info` of Register2's sealed shares: this user, node, version and epoch. */
export function register2Info(user: UserRef, nodeId: Uint8Array, version: Uint8Array, epoch: number | bigint): Uint8Array {
  return kdf.tupleHash(
    kdf.LABEL_HPKE_REGISTER2,
    utf8(user.tenant, "tenant"),
    utf8(user.userId, "user_id"),
    fixedLen(nodeId, kdf.NODE_ID_LEN),
    fixedLen(version, kdf.VERSION_LEN),
    kdf.u64(epoch),
  );
}

/** HPKE `info` of Recover3's sealed reply: this user, node, version and attempt. */
export function recover3Info(user: UserRef, nodeId: Uint8Array, version: Uint8Array, attemptId: Uint8Array): Uint8Array {
  return kdf.tupleHash(
    kdf.LABEL_HPKE_RECOVER3,
    utf8(user.tenant, "tenant"),
    utf8(user.userId, "user_id"),
    fixedLen(nodeId, kdf.NODE_ID_LEN),
    fixedLen(version, kdf.VERSION_LEN),
    fixedLen(attemptId, 16),
  );
}
