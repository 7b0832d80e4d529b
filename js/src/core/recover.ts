/**
 * Recovery (docs/protocol.md §4), client side, one function per step: `choice.settled` /
 * `choice.chooseVersion` (after Recover1) → Argon2id (`kdf.stretchPassword`) →
 * {@link startRecover2} → {@link finishRecover2} (combine, check the commitment, verify the
 * evaluations only when it does not match) → {@link finishRecover3} (verify secret shares,
 * decrypt); {@link admitSpares} when a Recover3 falls short.
 *
 * Maps keyed by node use the canonical {@link NodeRef} objects of `messages.nodeRef`.
 */
// The version choice lives in choice.ts (as in the Python SDK since the split); re-exported so
// callers written against this module keep working.
export {
  type VersionChoice,
  cannotServe,
  chooseVersion,
  guessesLeft,
  holdsNewer,
  lockoutIsCertain,
  settled,
} from "./choice.js";
import { equal, toHex } from "./bytes.js";
import type { VersionChoice } from "./choice.js";
import { ClusterUnavailable, InvalidPassword, MalformedMessage, ProtocolError } from "./errors.js";
import { Element, type Scalar } from "./group.js";
import * as hpke from "./hpke.js";
import { HpkePrivateKey } from "./hpke.js";
import * as kdf from "./kdf.js";
import {
  ATTEMPT_ID_LEN,
  NONCE_LEN,
  type NodeRef,
  type Recover2,
  type Recover2Reply,
  type Recover3,
  type Recover3Reply,
  type UserRef,
} from "./messages.js";
import * as oprf from "./oprf.js";
import { type VersionPolicy, verifyOprfKeySignature } from "./policy.js";
import { type Randomness, SYSTEM } from "./randomness.js";
import * as seal from "./seal.js";
import * as shamir from "./shamir.js";

/** Client state between Recover2 and Recover3 (holds secrets: never logged). */
export interface RecoveryAttempt {
  readonly user: UserRef;
  readonly choice: VersionChoice;
  readonly attemptId: Uint8Array;
  readonly blind: Scalar;
  readonly blindedElement: Element;
  readonly accessKey: Uint8Array;
  readonly encryptionKeySeed: Uint8Array;
  /** Fresh: Recover3 replies are sealed to it. */
  readonly replyKey: HpkePrivateKey;
}

/** The Recover2 request of an attempt, identical for every node. */
export function attemptRequest(attempt: RecoveryAttempt): Recover2 {
  return { version: attempt.choice.version, attemptId: attempt.attemptId, blindedElement: attempt.blindedElement };
}

/** Blind the access key with a fresh blind, attempt id and reply key (§4 step 4). */
export async function startRecover2(
  user: UserRef,
  choice: VersionChoice,
  accessKey: Uint8Array,
  encryptionKeySeed: Uint8Array,
  rng: Randomness = SYSTEM,
): Promise<RecoveryAttempt> {
  const { blind, blindedElement } = oprf.blind(accessKey, { blind: rng.scalar() });
  const attemptId = rng.bytes(ATTEMPT_ID_LEN);
  const replyKey = await HpkePrivateKey.fromSeed(rng.bytes(hpke.SEED_LEN));
  return { user, choice, attemptId, blind, blindedElement, accessKey, encryptionKeySeed, replyKey };
}

/**
 * The password checked out: the Recover3 request for each node of the group. `setAside` names
 * the Recover2 replies left out of the group, with why (each one a node that misbehaved).
 */
export interface UnlockedAttempt {
  readonly attempt: RecoveryAttempt;
  /** Signed by vk_v for every node of the group (checked). */
  readonly policy: VersionPolicy;
  readonly unlockKey: Uint8Array;
  readonly requests: ReadonlyMap<NodeRef, Recover3>;
  readonly setAside: ReadonlyMap<NodeRef, string>;
}

/** The policy a reply claims: its guess limit and the Argon2id parameters in use. */
export function replyPolicy(attempt: RecoveryAttempt, reply: Recover2Reply): VersionPolicy {
  return { maxGuesses: reply.maxGuesses, argon2: attempt.choice.argon2 };
}

function policyProblem(attempt: RecoveryAttempt, node: NodeRef, reply: Recover2Reply): string | null {
  const ok = verifyOprfKeySignature({
    user: attempt.user,
    node,
    version: attempt.choice.version,
    epoch: attempt.choice.epoch,
    publicShare: reply.oprfPublicShare,
    policy: replyPolicy(attempt, reply),
    signature: reply.oprfKeySignature,
    verifyingKey: reply.verifyingKey,
  });
  return ok ? null : "signature does not verify for this node's public share and policy";
}

/** Why `reply` is invalid, or null: the signed public share and policy, the DLEQ proof. */
export function verifyRecover2Reply(attempt: RecoveryAttempt, node: NodeRef, reply: Recover2Reply): string | null {
  const why = policyProblem(attempt, node, reply);
  if (why !== null) return why;
  try {
    if (
      !oprf.verifyProof(
        Element.generator(),
        reply.oprfPublicShare,
        [attempt.blindedElement],
        [reply.evaluatedElement],
        reply.proof,
      )
    ) {
      return "evaluation proof (DLEQ) does not verify";
    }
  } catch (error) {
    if (error instanceof MalformedMessage) return `evaluation does not verify: ${error.message}`;
    throw error;
  }
  if (reply.nonce.length !== NONCE_LEN) return "nonce has the wrong length";
  return null;
}

/**
 * Fewer than t consistent, valid evaluations so far. `setAside` names the replies that failed
 * verification; `missing` is how many more valid replies would complete a group of t: ask that
 * many further nodes in the same attempt and call {@link finishRecover2} again.
 */
export class TooFewValid extends ProtocolError {
  readonly setAside: ReadonlyMap<NodeRef, string>;
  readonly missing: number;
  constructor(setAside: ReadonlyMap<NodeRef, string>, reason: string, options: { missing: number }) {
    super(
      [...setAside.keys()].map((n) => n.name),
      reason,
    );
    this.setAside = new Map(setAside);
    this.missing = options.missing;
  }
}

/** The password is wrong, decided by a valid group of t; `setAside` names invalid replies. */
export class PasswordMismatch extends InvalidPassword {
  readonly setAside: ReadonlyMap<NodeRef, string>;
  constructor(guessesRemaining: number, setAside: ReadonlyMap<NodeRef, string>) {
    super(guessesRemaining);
    this.setAside = new Map(setAside);
  }
}

function recover3Request(attempt: RecoveryAttempt, unlockKey: Uint8Array, node: NodeRef, reply: Recover2Reply): Recover3 {
  const replyKey = attempt.replyKey.public.encoded;
  const proof = kdf.unlockProof(kdf.unlockTag(unlockKey, node.nodeId), reply.nonce, attempt.attemptId, replyKey);
  return {
    version: attempt.choice.version,
    attemptId: attempt.attemptId,
    unlockProof: proof,
    replyKey,
    replySeed: attempt.replyKey.seed,
  };
}

function unlock(
  attempt: RecoveryAttempt,
  group: ReadonlyMap<NodeRef, Recover2Reply>,
  threshold: number,
  setAside: ReadonlyMap<NodeRef, string>,
): UnlockedAttempt | null {
  const shares = new Map<number, Element>();
  for (const [node, reply] of group) shares.set(node.index, reply.evaluatedElement);
  let output: Uint8Array;
  try {
    const combined = shamir.combineElements(shares, threshold);
    output = oprf.finalize(attempt.accessKey, attempt.blind, combined);
  } catch (error) {
    if (error instanceof MalformedMessage) return null;
    throw error;
  }
  const reference = group.values().next().value!.commitment;
  if (!equal(kdf.commitment(output, attempt.accessKey), reference)) return null;
  const unlockKey = kdf.unlockKey(output);
  let policy: VersionPolicy | undefined;
  for (const reply of group.values()) {
    const p = replyPolicy(attempt, reply);
    if (policy === undefined || p.maxGuesses < policy.maxGuesses) policy = p; // the strictest
  }
  const requests = new Map<NodeRef, Recover3>();
  for (const [node, reply] of group) requests.set(node, recover3Request(attempt, unlockKey, node, reply));
  return { attempt, policy: policy!, unlockKey, requests, setAside: new Map(setAside) };
}

/** The replies sharing the most common `(vk_v, commitment)`; ties go to the lowest node index. */
function largestGroup(replies: ReadonlyMap<NodeRef, Recover2Reply>): Map<NodeRef, Recover2Reply> {
  const groups = new Map<string, Map<NodeRef, Recover2Reply>>();
  for (const [node, reply] of [...replies].sort((a, b) => a[0].index - b[0].index)) {
    const key = `${toHex(reply.verifyingKey)}/${toHex(reply.commitment)}`;
    let group = groups.get(key);
    if (group === undefined) groups.set(key, (group = new Map()));
    group.set(node, reply);
  }
  let best = new Map<NodeRef, Recover2Reply>();
  for (const group of groups.values()) if (group.size > best.size) best = group;
  return best;
}

const OUTSIDER = "disagrees (vk_v or commitment) with the nodes that unlocked the attempt";

/**
 * Combine ≥ t evaluations and check the password (§4 step 6), verifying lazily: the largest
 * `(vk_v, commitment)` group is combined at once, and if it matches the commitment only the
 * t signatures are checked. Otherwise every reply is verified (signature and DLEQ proof) and
 * the valid ones regrouped, telling a wrong password ({@link PasswordMismatch}) from forged
 * evaluations ({@link TooFewValid}, naming the culprits).
 */
export function finishRecover2(
  attempt: RecoveryAttempt,
  replies: ReadonlyMap<NodeRef, Recover2Reply>,
  options: { threshold: number },
): UnlockedAttempt {
  const threshold = options.threshold;
  const first = largestGroup(replies);
  if (first.size >= threshold) {
    const outsiders = new Map<NodeRef, string>();
    for (const node of replies.keys()) if (!first.has(node)) outsiders.set(node, OUTSIDER);
    const unlocked = unlock(attempt, first, threshold, outsiders);
    if (unlocked !== null && [...first].every(([node, reply]) => policyProblem(attempt, node, reply) === null)) {
      return unlocked;
    }
  }
  const invalid = new Map<NodeRef, string>();
  const valid = new Map<NodeRef, Recover2Reply>();
  for (const [node, reply] of replies) {
    const why = verifyRecover2Reply(attempt, node, reply);
    if (why === null) valid.set(node, reply);
    else invalid.set(node, why);
  }
  const group = largestGroup(valid);
  if (group.size < threshold) {
    const reasons = [...invalid].map(([n, why]) => `${n.name}: ${why}`).join("; ");
    throw new TooFewValid(invalid, reasons || `only ${group.size} consistent valid evaluations; ${threshold} needed`, {
      missing: threshold - group.size,
    });
  }
  const outsiders = new Map(invalid);
  for (const node of valid.keys()) if (!group.has(node)) outsiders.set(node, OUTSIDER);
  const sameAsFirst = group.size === first.size && [...group.keys()].every((n) => first.has(n));
  const unlocked = sameAsFirst ? null : unlock(attempt, group, threshold, outsiders);
  if (unlocked === null) {
    const remaining = [...group.values()].map((r) => r.guessesRemaining).sort((a, b) => b - a);
    throw new PasswordMismatch(remaining[threshold - 1] as number, invalid);
  }
  return unlocked;
}

/**
 * Add Recover3 requests for more nodes of an unlocked attempt (a Recover3 fell short): each
 * spare reply must verify and belong to the group (`groupReply`'s vk_v and commitment).
 */
export function admitSpares(
  unlocked: UnlockedAttempt,
  groupReply: Recover2Reply,
  replies: ReadonlyMap<NodeRef, Recover2Reply>,
): { unlocked: UnlockedAttempt; setAside: Map<NodeRef, string> } {
  const requests = new Map(unlocked.requests);
  const setAside = new Map<NodeRef, string>();
  for (const [node, reply] of replies) {
    let why = verifyRecover2Reply(unlocked.attempt, node, reply);
    if (
      why === null &&
      !(equal(reply.verifyingKey, groupReply.verifyingKey) && equal(reply.commitment, groupReply.commitment))
    ) {
      why = "inconsistent with the other nodes";
    }
    if (why === null) requests.set(node, recover3Request(unlocked.attempt, unlocked.unlockKey, node, reply));
    else setAside.set(node, why);
  }
  return { unlocked: { ...unlocked, requests }, setAside };
}

/** Why a Recover3 reply is invalid, or null: the share must match its commitment (§4 step 8). */
export function verifyRecover3Reply(unlocked: UnlockedAttempt, node: NodeRef, reply: Recover3Reply): string | null {
  const expected = kdf.secretCommitment(unlocked.unlockKey, node.nodeId, reply.secretShare.encoded, reply.encryptedSecret);
  return equal(expected, reply.secretCommitment) ? null : "secret share does not match its commitment";
}

/** Verify the secret shares, combine s and decrypt the secret (§4 step 8). */
export function finishRecover3(
  unlocked: UnlockedAttempt,
  replies: ReadonlyMap<NodeRef, Recover3Reply>,
  options: { threshold: number },
): Uint8Array {
  const { threshold } = options;
  const attempt = unlocked.attempt;
  const invalid: NodeRef[] = [];
  const groups = new Map<string, { ciphertext: Uint8Array; shares: Map<number, Scalar> }>();
  for (const [node, reply] of replies) {
    if (verifyRecover3Reply(unlocked, node, reply) !== null) {
      invalid.push(node);
      continue;
    }
    const key = toHex(reply.encryptedSecret);
    let group = groups.get(key);
    if (group === undefined) groups.set(key, (group = { ciphertext: reply.encryptedSecret, shares: new Map() }));
    group.shares.set(node.index, reply.secretShare);
  }
  let best: { ciphertext: Uint8Array; shares: Map<number, Scalar> } | undefined;
  for (const group of groups.values()) if (best === undefined || group.shares.size > best.shares.size) best = group;
  if (best === undefined || best.shares.size < threshold) {
    if (invalid.length) {
      throw new ProtocolError(
        invalid.map((n) => n.name),
        "secret share does not match its commitment",
      );
    }
    throw new ClusterUnavailable({}, `fewer than ${threshold} nodes released their share`);
  }
  const s = shamir.reconstruct(best.shares, threshold);
  const key = kdf.encryptionKey(attempt.encryptionKeySeed, s.encoded);
  const ad = kdf.secretAd(attempt.user.tenant, attempt.user.userId, attempt.choice.version);
  try {
    return seal.decryptSecret(key, best.ciphertext, ad);
  } catch (error) {
    if (error instanceof MalformedMessage) {
      throw new ProtocolError(
        [...replies.keys()].map((n) => n.name),
        "the encrypted secret failed authentication",
      );
    }
    throw error;
  }
}
