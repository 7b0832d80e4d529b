/**
 * A registration's policy and the one-time key's signature over it (docs/protocol.md §3): the
 * registering client signs, for every node, the node's public OPRF share with the version's
 * guess limit and Argon2id parameters, so the limit and parameters a client acts on are the
 * ones the registering client chose, never numbers a node made up. Ed25519 from `@noble/curves`,
 * verified strictly (RFC 8032 cofactorless, canonical encodings: what OpenSSL accepts).
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import type { Element } from "./group.js";
import { type Argon2Params, oprfKeyStatement } from "./kdf.js";
import type { NodeRef, UserRef } from "./messages.js";

/** What a version promises every client: its guess limit and Argon2id parameters. */
export interface VersionPolicy {
  readonly maxGuesses: number;
  readonly argon2: Argon2Params;
}

interface SignedSlot {
  readonly user: UserRef;
  readonly node: NodeRef;
  readonly version: Uint8Array;
  readonly epoch: bigint;
  readonly publicShare: Element;
  readonly policy: VersionPolicy;
}

function statement(slot: SignedSlot): Uint8Array {
  return oprfKeyStatement(
    slot.user.tenant,
    slot.user.userId,
    slot.version,
    slot.epoch,
    slot.node.nodeId,
    slot.node.index,
    slot.publicShare.encoded,
    slot.policy.maxGuesses,
    slot.policy.argon2,
  );
}

/** `sig_i`: the one-time key's signature (32-byte Ed25519 seed) over K_i, the node's slot and the policy. */
export function signOprfKey(signingKey: Uint8Array, slot: SignedSlot): Uint8Array {
  return ed25519.sign(statement(slot), signingKey);
}

/** Whether `signature` binds this node's public share and `policy` to the version. */
export function verifyOprfKeySignature(
  slot: SignedSlot & { readonly signature: Uint8Array; readonly verifyingKey: Uint8Array },
): boolean {
  return verifyEd25519(slot.signature, statement(slot), slot.verifyingKey);
}

/** Strict Ed25519 verification; false (never a throw) for malformed keys or signatures. */
export function verifyEd25519(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}
