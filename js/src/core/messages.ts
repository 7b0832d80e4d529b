/**
 * The protocol's messages as readonly interfaces over validated values: the TypeScript
 * counterparts of the Python SDK's frozen dataclasses (`pakr.proto.messages`), same fields in
 * camelCase. `wire.ts` converts them to and from the protobuf messages, validating every field
 * on the way in, so a value of one of these types is always well formed.
 *
 * Epochs are `bigint`: they are 64-bit on the wire and a JavaScript number loses precision
 * past 2^53.
 */
import { toHex } from "./bytes.js";
import type { Element, Scalar } from "./group.js";
import type { Argon2Params } from "./kdf.js";
import type { Proof } from "./oprf.js";

export const PROTOCOL_VERSION = 2;

export const VERSION_LEN = 16;
export const NODE_ID_LEN = 16;
export const ATTEMPT_ID_LEN = 16;
export const NONCE_LEN = 16;
export const RESET_NONCE_LEN = 40; // expiry (8) ‖ random (16) ‖ MAC (16)
export const REQUEST_ID_LEN = 16;
export const MAC_LEN = 32;
export const SIGNATURE_LEN = 64;
export const VERIFYING_KEY_LEN = 32;
export const MAX_USER_ID_BYTES = 128;
export const MAX_TENANT_BYTES = 64;
export const MAX_GUESSES_LIMIT = 100;
export const DEFAULT_MAX_GUESSES = 10;
export const MAX_EPOCH = 2n ** 64n - 1n;
export const LOCKOUT_GRACE_SECONDS = 600.0;

/**
 * What the protocol needs to know of a node: its 16-byte id and its Shamir index. Node refs
 * are compared by {@link nodeKey}; use {@link nodeRef} to make one, so the same node is the
 * same object wherever a map is keyed by it.
 */
export interface NodeRef {
  readonly nodeId: Uint8Array;
  readonly index: number;
  /** Human-readable name for error messages (never secret): `node3(1a2b3c4d)`. */
  readonly name: string;
}

const NODE_REFS = new Map<string, NodeRef>();

/** The canonical {@link NodeRef} for `(nodeId, index)` (one object per node, so `Map` keys work). */
export function nodeRef(nodeId: Uint8Array, index: number): NodeRef {
  const key = `${toHex(nodeId)}/${index}`;
  let ref = NODE_REFS.get(key);
  if (ref === undefined) {
    ref = Object.freeze({ nodeId: Uint8Array.from(nodeId), index, name: `node${index}(${toHex(nodeId).slice(0, 8)})` });
    NODE_REFS.set(key, ref);
  }
  return ref;
}

/** A string identifying a node ref by value (id and index). */
export function nodeKey(node: NodeRef): string {
  return `${toHex(node.nodeId)}/${node.index}`;
}

/** Whose secret: the tenant (application) and its user id. */
export interface UserRef {
  readonly tenant: string;
  readonly userId: string;
}

/** One row of a node's audit log as ReadAudit returns it. */
export interface AuditRow {
  readonly id: bigint;
  readonly time: number;
  readonly tenant: string;
  readonly userId: string;
  readonly op: string;
  readonly outcome: string;
  readonly peer: string;
}

/** One stored version of a registration as a node reports it (Register1/Recover1). */
export interface VersionInfo {
  readonly version: Uint8Array;
  readonly epoch: bigint;
  readonly argon2: Argon2Params;
  readonly guessesRemaining: number;
  readonly locked: boolean;
  /** The version's own guess limit (0: the node did not say). */
  readonly maxGuesses: number;
}

/** Whether this node can still evaluate a guess for the version. */
export function usable(info: VersionInfo): boolean {
  return !info.locked && info.guessesRemaining > 0;
}

/** A node's view of a user: committed and pending versions and a tombstone epoch. */
export interface UserStatus {
  readonly committed: VersionInfo | null;
  readonly pending: VersionInfo | null;
  readonly tombstoneEpoch: bigint;
  /** Recover1 only: the node's single-use nonce for ResetGuesses (empty otherwise). */
  readonly resetNonce: Uint8Array;
}

/** A {@link UserStatus} with defaults for the fields not given. */
export function userStatus(fields: Partial<UserStatus> = {}): UserStatus {
  return {
    committed: fields.committed ?? null,
    pending: fields.pending ?? null,
    tombstoneEpoch: fields.tombstoneEpoch ?? 0n,
    resetNonce: fields.resetNonce ?? new Uint8Array(0),
  };
}

/** The highest epoch this node holds for the user (0 if it knows nothing). */
export function highestEpoch(status: UserStatus): bigint {
  let high = status.tombstoneEpoch;
  for (const v of [status.committed, status.pending]) if (v !== null && v.epoch > high) high = v.epoch;
  return high;
}

/** Whether the node knows nothing of the user. */
export function isEmpty(status: UserStatus): boolean {
  return status.committed === null && status.pending === null && status.tombstoneEpoch === 0n;
}

/** Register2: one node's share of a new registration, stored as the pending version. */
export interface Register2 {
  readonly version: Uint8Array;
  readonly epoch: bigint;
  readonly expected: Uint8Array | null;
  readonly oprfKeyShare: Scalar;
  readonly oprfPublicShare: Element;
  readonly oprfKeySignature: Uint8Array;
  readonly verifyingKey: Uint8Array;
  readonly commitment: Uint8Array;
  readonly unlockTag: Uint8Array;
  readonly secretShare: Scalar;
  readonly encryptedSecret: Uint8Array;
  readonly secretCommitment: Uint8Array;
  readonly maxGuesses: number;
  readonly argon2: Argon2Params;
}

/** Register3 (commit): make the pending `version` the committed one. */
export interface Register3 {
  readonly version: Uint8Array;
}

/** Recover2: a counted OPRF evaluation of the blinded element. */
export interface Recover2 {
  readonly version: Uint8Array;
  readonly attemptId: Uint8Array;
  readonly blindedElement: Element;
}

/** A node's evaluation `Z_i = k_i·B` with its DLEQ proof and signed public share. */
export interface Recover2Reply {
  readonly evaluatedElement: Element;
  readonly proof: Proof;
  readonly oprfPublicShare: Element;
  readonly oprfKeySignature: Uint8Array;
  readonly verifyingKey: Uint8Array;
  readonly commitment: Uint8Array;
  readonly guessesRemaining: number;
  readonly nonce: Uint8Array;
  /** The version's signed limit (checked with sig_i). */
  readonly maxGuesses: number;
}

/** Recover3: prove knowledge of the unlock key for the node's latest attempt. */
export interface Recover3 {
  readonly version: Uint8Array;
  readonly attemptId: Uint8Array;
  readonly unlockProof: Uint8Array;
  /** The client's fresh HPKE public key for this attempt's reply. */
  readonly replyKey: Uint8Array;
  /** The matching private seed, client side only (never encoded or shown). */
  readonly replySeed: Uint8Array | null;
}

/** A node's share `s_i` of the encryption scalar and the encrypted secret. */
export interface Recover3Reply {
  readonly secretShare: Scalar;
  readonly encryptedSecret: Uint8Array;
  readonly secretCommitment: Uint8Array;
}

/** ResetGuesses: reset the count of `version` at a node that did not release its share. */
export interface ResetGuesses {
  readonly version: Uint8Array;
  readonly nonce: Uint8Array;
  readonly proof: Uint8Array;
}

/** Delete: replace every version of the user with a tombstone at `epoch`. */
export interface Delete {
  readonly epoch: bigint;
}
