/**
 * Password stretching (Argon2id), hashing (TupleHash256) and MACs (KMAC256) of pakr.
 *
 * One named function per derived value of docs/protocol.md §3/§4, with the same names and
 * byte layouts as the Python SDK's `pakr.proto.kdf`, so the two produce the same bytes (the
 * vector replay checks every one). Each value uses its own customization label; multi-field
 * MAC inputs prefix each field with its 4-byte big-endian length, and TupleHash encodes each
 * field's length itself, so `("ab", "c")` and `("a", "bc")` never collide.
 *
 * Argon2id runs in WebAssembly (`hash-wasm`): the pure-JS implementation is several times
 * slower at the default 64 MiB (bench/ measures both), and a login waits for it.
 */
import { kmac256, tuplehash256 } from "@noble/hashes/sha3-addons.js";
import { argon2id as wasmArgon2id } from "hash-wasm";
import { concat, equal as bytesEqual, i2osp, utf8 } from "./bytes.js";
import { MalformedMessage, WeakParameters } from "./errors.js";

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

export const LABEL_SALT = ascii("pakr/v1/salt");
export const LABEL_OPRF_KEY = ascii("pakr/v1/oprf-key");
export const LABEL_UNLOCK_KEY = ascii("pakr/v1/unlock-key");
export const LABEL_COMMITMENT = ascii("pakr/v1/commitment");
export const LABEL_UNLOCK_TAG = ascii("pakr/v1/unlock-tag");
export const LABEL_ENCRYPTION_KEY = ascii("pakr/v1/encryption-key");
export const LABEL_SECRET_AD = ascii("pakr/v1/secret-ad");
export const LABEL_SECRET_COMMITMENT = ascii("pakr/v1/secret-commitment");
export const LABEL_UNLOCK_PROOF = ascii("pakr/v1/unlock-proof");
export const LABEL_RESET_PROOF = ascii("pakr/v1/reset-proof");
export const LABEL_RESET_NONCE = ascii("pakr/v1/reset-nonce");
export const LABEL_HPKE_REGISTER2 = ascii("pakr/v1/hpke-register2");
export const LABEL_HPKE_RECOVER3 = ascii("pakr/v1/hpke-recover3");

export const DIGEST_LEN = 32;
export const MIN_KEY_LEN = 32;
export const VERSION_LEN = 16;
export const NODE_ID_LEN = 16;
export const NONCE_LEN = 16;
export const ATTEMPT_ID_LEN = 16;
export const SCALAR_LEN = 32;
export const ELEMENT_LEN = 32;
export const OPRF_OUTPUT_LEN = 64;

// --- Argon2id ---------------------------------------------------------------------------------

/** Argon2id cost parameters (RFC 9106): memory in KiB, passes, lanes. */
export interface Argon2Params {
  readonly memoryKib: number;
  readonly iterations: number;
  readonly parallelism: number;
}

/** The client's floor: a node reporting weaker parameters would make offline guessing cheap. */
export const ARGON2_FLOOR: Argon2Params = Object.freeze({ memoryKib: 19456, iterations: 2, parallelism: 1 });
/** The client's ceiling: a node reporting absurd costs would stall the client. */
export const ARGON2_CEILING: Argon2Params = Object.freeze({ memoryKib: 1048576, iterations: 64, parallelism: 16 });
export const DEFAULT_ARGON2: Argon2Params = Object.freeze({ memoryKib: 65536, iterations: 3, parallelism: 1 });
/** The floor itself: for tests and the demo only. */
export const DEV_ARGON2: Argon2Params = Object.freeze({ memoryKib: 19456, iterations: 2, parallelism: 1 });

const ARGON2_FIELDS = [
  ["memoryKib", "memory_kib"],
  ["iterations", "iterations"],
  ["parallelism", "parallelism"],
] as const;

/** `WeakParameters` naming the field, its value and the bound it violates (Python `Argon2Params.check`). */
export function checkArgon2(params: Argon2Params): void {
  for (const [key, name] of ARGON2_FIELDS) {
    const value = params[key];
    const low = ARGON2_FLOOR[key];
    const high = ARGON2_CEILING[key];
    if (!Number.isSafeInteger(value)) throw new WeakParameters(`argon2 ${name} must be an integer`);
    if (value < low) throw new WeakParameters(`argon2 ${name}=${value} is below the floor ${low}`);
    if (value > high) throw new WeakParameters(`argon2 ${name}=${value} is above the ceiling ${high}`);
  }
}

/** Whether two parameter sets are the same (the value equality of Python's dataclass). */
export function sameArgon2(a: Argon2Params, b: Argon2Params): boolean {
  return a.memoryKib === b.memoryKib && a.iterations === b.iterations && a.parallelism === b.parallelism;
}

/**
 * Argon2id of `password` in WebAssembly. Does not enforce the floor/ceiling (callers call
 * {@link checkArgon2} where policy applies); rejects only what Argon2 itself cannot run.
 */
export async function argon2id(
  password: Uint8Array,
  salt: Uint8Array,
  params: Argon2Params,
  length = 64,
): Promise<Uint8Array> {
  if (params.parallelism < 1 || params.iterations < 1) {
    throw new RangeError("argon2 needs parallelism >= 1 and iterations >= 1");
  }
  if (params.memoryKib < 8 * params.parallelism) throw new RangeError("argon2 memory must be at least 8 KiB per lane");
  if (salt.length < 8 || length < 4) throw new RangeError("argon2 needs a salt of >= 8 bytes and an output of >= 4 bytes");
  return wasmArgon2id({
    password,
    salt,
    iterations: params.iterations,
    parallelism: params.parallelism,
    memorySize: params.memoryKib,
    hashLength: length,
    outputType: "binary",
  });
}

// --- SP 800-185 wrappers ----------------------------------------------------------------------

/** Each field prefixed by its 4-byte big-endian length: an injective encoding. */
function enc(fields: readonly Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const field of fields) {
    parts.push(i2osp(field.length, 4), field);
  }
  return concat(...parts);
}

/** `H(label; fields…)` = TupleHash256(fields, L=256 bits, S=label). */
export function tupleHash(label: Uint8Array, ...fields: Uint8Array[]): Uint8Array {
  return tuplehash256(fields, { dkLen: DIGEST_LEN, personalization: label });
}

/** `MAC(key, label; fields…)` = KMAC256(key, enc(fields), L=256 bits, S=label); key >= 32 bytes. */
export function mac(key: Uint8Array, label: Uint8Array, ...fields: Uint8Array[]): Uint8Array {
  if (key.length < MIN_KEY_LEN) throw new RangeError(`KMAC256 keys must be at least ${MIN_KEY_LEN} bytes`);
  return kmac256(key, enc(fields), { dkLen: DIGEST_LEN, personalization: label });
}

/** 8-byte big-endian encoding of an integer inside a hashed tuple. */
export function u64(value: number | bigint): Uint8Array {
  if (typeof value === "number" && !Number.isSafeInteger(value)) throw new RangeError("u64 needs an integer");
  const v = BigInt(value);
  if (v < 0n || v >= 1n << 64n) throw new RangeError("u64 value out of range 0..2**64-1");
  return i2osp(v, 8);
}

function fixed(name: string, value: Uint8Array, length: number): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) throw new MalformedMessage(`${name} must be ${length} bytes`);
  return value;
}

// --- derived values (docs/protocol.md) ---------------------------------------------------------

/** `salt = H("pakr/v1/salt"; tenant, user_id, version)`. */
export function registrationSalt(tenant: string, userId: string, version: Uint8Array): Uint8Array {
  return tupleHash(LABEL_SALT, utf8(tenant, "tenant"), utf8(userId, "user_id"), fixed("version", version, VERSION_LEN));
}

/** The two halves of Argon2id(password, salt, params): the OPRF input and the key seed. */
export interface StretchedPassword {
  readonly accessKey: Uint8Array;
  readonly encryptionKeySeed: Uint8Array;
}

/** `access_key ‖ encryption_key_seed = Argon2id(password, salt, params)` (32 + 32). */
export async function stretchPassword(
  password: Uint8Array,
  tenant: string,
  userId: string,
  version: Uint8Array,
  params: Argon2Params,
): Promise<StretchedPassword> {
  const out = await argon2id(password, registrationSalt(tenant, userId, version), params, 64);
  return { accessKey: out.slice(0, 32), encryptionKeySeed: out.slice(32) };
}

/** The digest `sig_i` signs: K_i bound to user, version, epoch, node slot and the policy. */
export function oprfKeyStatement(
  tenant: string,
  userId: string,
  version: Uint8Array,
  epoch: number | bigint,
  nodeId: Uint8Array,
  index: number,
  publicShare: Uint8Array,
  maxGuesses: number,
  argon2: Argon2Params,
): Uint8Array {
  return tupleHash(
    LABEL_OPRF_KEY,
    utf8(tenant, "tenant"),
    utf8(userId, "user_id"),
    fixed("version", version, VERSION_LEN),
    u64(epoch),
    fixed("node_id", nodeId, NODE_ID_LEN),
    u64(index),
    fixed("public_share", publicShare, ELEMENT_LEN),
    u64(maxGuesses),
    u64(argon2.memoryKib),
    u64(argon2.iterations),
    u64(argon2.parallelism),
  );
}

/** `MAC(oprf_output, "pakr/v1/unlock-key";)`. */
export function unlockKey(oprfOutput: Uint8Array): Uint8Array {
  return mac(fixed("oprf_output", oprfOutput, OPRF_OUTPUT_LEN), LABEL_UNLOCK_KEY);
}

/** `MAC(oprf_output, "pakr/v1/commitment"; access_key)`. */
export function commitment(oprfOutput: Uint8Array, accessKey: Uint8Array): Uint8Array {
  return mac(fixed("oprf_output", oprfOutput, OPRF_OUTPUT_LEN), LABEL_COMMITMENT, fixed("access_key", accessKey, 32));
}

/** `MAC(unlock_key, "pakr/v1/unlock-tag"; node_id)`. */
export function unlockTag(unlockKeyValue: Uint8Array, nodeId: Uint8Array): Uint8Array {
  return mac(unlockKeyValue, LABEL_UNLOCK_TAG, fixed("node_id", nodeId, NODE_ID_LEN));
}

/** `MAC(encryption_key_seed, "pakr/v1/encryption-key"; s)`. */
export function encryptionKey(encryptionKeySeed: Uint8Array, s: Uint8Array): Uint8Array {
  return mac(encryptionKeySeed, LABEL_ENCRYPTION_KEY, fixed("s", s, SCALAR_LEN));
}

/** `H("pakr/v1/secret-ad"; tenant, user_id, version)`. */
export function secretAd(tenant: string, userId: string, version: Uint8Array): Uint8Array {
  return tupleHash(LABEL_SECRET_AD, utf8(tenant, "tenant"), utf8(userId, "user_id"), fixed("version", version, VERSION_LEN));
}

/** `MAC(unlock_key, "pakr/v1/secret-commitment"; node_id, s_i, encrypted_secret)`. */
export function secretCommitment(
  unlockKeyValue: Uint8Array,
  nodeId: Uint8Array,
  sShare: Uint8Array,
  encryptedSecret: Uint8Array,
): Uint8Array {
  return mac(
    unlockKeyValue,
    LABEL_SECRET_COMMITMENT,
    fixed("node_id", nodeId, NODE_ID_LEN),
    fixed("s_share", sShare, SCALAR_LEN),
    encryptedSecret,
  );
}

/** `MAC(unlock_tag_i, "pakr/v1/unlock-proof"; nonce_i, attempt_id, reply_key)`. */
export function unlockProof(
  unlockTagValue: Uint8Array,
  nonce: Uint8Array,
  attemptId: Uint8Array,
  replyKey: Uint8Array,
): Uint8Array {
  return mac(
    unlockTagValue,
    LABEL_UNLOCK_PROOF,
    fixed("nonce", nonce, NONCE_LEN),
    fixed("attempt_id", attemptId, ATTEMPT_ID_LEN),
    replyKey,
  );
}

/** `MAC(unlock_tag_i, "pakr/v1/reset-proof"; version, nonce_i)`. */
export function resetProof(unlockTagValue: Uint8Array, version: Uint8Array, nonce: Uint8Array): Uint8Array {
  return mac(unlockTagValue, LABEL_RESET_PROOF, fixed("version", version, VERSION_LEN), nonce);
}

/** Constant-time comparison of two derived values (tags, commitments, proofs). */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  return bytesEqual(a, b);
}

