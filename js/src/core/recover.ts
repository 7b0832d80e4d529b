/**
 * Recovery (docs/protocol.md §4), client side, one function per step: {@link settled} /
 * {@link chooseVersion} (after Recover1) → Argon2id (`kdf.stretchPassword`) →
 * {@link startRecover2} → {@link finishRecover2} (combine, check the commitment, verify the
 * evaluations only when it does not match) → {@link finishRecover3} (verify secret shares,
 * decrypt); {@link admitSpares} when a Recover3 falls short.
 *
 * Maps keyed by node use the canonical {@link NodeRef} objects of `messages.nodeRef`.
 */
import { blake2b } from "@noble/hashes/blake2.js";
import { compareBytes, concat, equal, toHex, utf8 } from "./bytes.js";
import {
  ClusterUnavailable,
  InvalidPassword,
  LockedOut,
  MalformedMessage,
  NotRegistered,
  ProtocolError,
} from "./errors.js";
import { Element, type Scalar } from "./group.js";
import * as hpke from "./hpke.js";
import { HpkePrivateKey } from "./hpke.js";
import * as kdf from "./kdf.js";
import { type Argon2Params, checkArgon2, sameArgon2 } from "./kdf.js";
import {
  ATTEMPT_ID_LEN,
  NONCE_LEN,
  type NodeRef,
  type Recover2,
  type Recover2Reply,
  type Recover3,
  type Recover3Reply,
  type UserRef,
  type UserStatus,
  type VersionInfo,
  usable,
} from "./messages.js";
import * as oprf from "./oprf.js";
import { type VersionPolicy, verifyOprfKeySignature } from "./policy.js";
import { type Randomness, SYSTEM } from "./randomness.js";
import * as seal from "./seal.js";
import * as shamir from "./shamir.js";

/** The version recovery will use and the nodes that can serve it. */
export interface VersionChoice {
  readonly version: Uint8Array;
  readonly epoch: bigint;
  readonly argon2: Argon2Params;
  /** Hold the version with the agreed parameters and can guess, in the order to ask them. */
  readonly nodes: readonly NodeRef[];
  /** Hold it only as pending: roll forward on success. */
  readonly pendingNodes: readonly NodeRef[];
  /** Reported the version with other Argon2 parameters. */
  readonly suspects: readonly NodeRef[];
  /** The version's own guess limit, as most holders report it (0: none). */
  readonly maxGuesses: number;
  /** Answered: locked, no guesses, or without it. */
  readonly cannotServe: readonly NodeRef[];
  /** Usable nodes' Recover1 guesses remaining, in ask order. */
  readonly guesses: readonly (readonly [NodeRef, number])[];
}

const versionKey = (version: Uint8Array, epoch: bigint): string => `${toHex(version)}/${epoch}`;
const argon2Key = (p: Argon2Params): string => `${p.memoryKib}/${p.iterations}/${p.parallelism}`;

/**
 * Whether the Recover1 answers so far decide the version whatever the others say: t nodes
 * report the same version committed, usable, with the same Argon2id parameters and no newer
 * tombstone.
 */
export function settled(answers: ReadonlyMap<NodeRef, UserStatus>, options: { threshold: number }): boolean {
  const agreeing = new Map<string, number>();
  for (const status of answers.values()) {
    const info = status.committed;
    if (info !== null && usable(info) && status.tombstoneEpoch < info.epoch) {
      const key = `${versionKey(info.version, info.epoch)}/${argon2Key(info.argon2)}`;
      agreeing.set(key, (agreeing.get(key) ?? 0) + 1);
    }
  }
  return [...agreeing.values()].some((count) => count >= options.threshold);
}

/** Whether a node's answer says it can never evaluate a guess for `(version, epoch)`. */
export function cannotServe(status: UserStatus, version: Uint8Array, epoch: bigint): boolean {
  for (const info of [status.committed, status.pending]) {
    if (info !== null && equal(info.version, version) && info.epoch === epoch && usable(info)) return false;
  }
  return true;
}

/**
 * The one rule for `LockedOut`: certain only when more than n - t distinct nodes answered that
 * they cannot serve the version, so fewer than t could ever serve it. Anything short of this
 * is `ClusterUnavailable`.
 */
export function lockoutIsCertain(unable: number, options: { threshold: number; nodeCount: number }): boolean {
  return unable > options.nodeCount - options.threshold;
}

type Preference = readonly [boolean, boolean, number, Uint8Array];

function preference(
  user: UserRef | null,
  node: NodeRef,
  info: VersionInfo,
  pending: boolean,
  distrusted: ReadonlySet<NodeRef>,
): Preference {
  const order =
    user === null
      ? Uint8Array.of(node.index)
      : blake2b(concat(utf8(user.tenant), Uint8Array.of(0), utf8(user.userId), Uint8Array.of(0), node.nodeId), {
          dkLen: 8,
        });
  return [distrusted.has(node), pending, info.guessesRemaining, order];
}

function comparePreference(a: Preference, b: Preference): number {
  if (a[0] !== b[0]) return a[0] ? 1 : -1;
  if (a[1] !== b[1]) return a[1] ? 1 : -1;
  if (a[2] !== b[2]) return a[2] - b[2];
  return compareBytes(a[3], b[3]);
}

interface Counted<T> {
  readonly value: T;
  count: number;
}

function tally<T>(items: Iterable<[string, T]>): Map<string, Counted<T>> {
  const out = new Map<string, Counted<T>>();
  for (const [key, value] of items) {
    const entry = out.get(key);
    if (entry === undefined) out.set(key, { value, count: 1 });
    else entry.count++;
  }
  return out;
}

/** The first entry with the highest count (Python's `Counter.most_common(1)`). */
function mostCommon<T>(counts: Map<string, Counted<T>>): Counted<T> | undefined {
  let best: Counted<T> | undefined;
  for (const entry of counts.values()) if (best === undefined || entry.count > best.count) best = entry;
  return best;
}

/**
 * Recover1 → which version to recover, committed first (§4 step 2): the highest-epoch version
 * committed on ≥ t nodes, failing that the highest-epoch version held by ≥ t nodes. The nodes
 * used must agree on Argon2id parameters within the floor and ceiling. `nodes` is the ask
 * order: committed holders before pending-only ones, then fewest guesses left, then an order
 * fixed per user; `distrusted` nodes last whatever they claim.
 */
export function chooseVersion(
  answers: ReadonlyMap<NodeRef, UserStatus>,
  failures: ReadonlyMap<NodeRef, string>,
  options: {
    threshold: number;
    nodeCount: number;
    user?: UserRef | null;
    distrusted?: ReadonlySet<NodeRef>;
  },
): VersionChoice {
  const t = options.threshold;
  const nodeCount = options.nodeCount;
  const user = options.user ?? null;
  const distrusted = options.distrusted ?? new Set<NodeRef>();
  type Key = { version: Uint8Array; epoch: bigint };
  const committedItems: [string, Key][] = [];
  const heldItems: [string, Key][] = [];
  for (const status of answers.values()) {
    const keys = new Map<string, Key>();
    for (const info of [status.committed, status.pending]) {
      if (info !== null) keys.set(versionKey(info.version, info.epoch), { version: info.version, epoch: info.epoch });
    }
    if (status.committed !== null) {
      committedItems.push([versionKey(status.committed.version, status.committed.epoch), status.committed]);
    }
    heldItems.push(...keys.entries());
  }
  const committed = tally(committedItems);
  const held = tally(heldItems);

  const best = (counter: Map<string, Counted<Key>>): Key | null => {
    let found: Key | null = null;
    for (const { value, count } of counter.values()) {
      if (count >= t && (found === null || value.epoch > found.epoch)) found = value;
    }
    return found;
  };

  const candidate = best(committed) ?? best(held);
  if (candidate === null) {
    let without = 0;
    for (const s of answers.values()) if (s.committed === null && s.pending === null) without++;
    if (without > nodeCount - t) throw new NotRegistered();
    let known: Key | null = null;
    for (const { value } of held.values()) if (known === null || value.epoch > known.epoch) known = value;
    if (known !== null) {
      let unableCount = 0;
      for (const s of answers.values()) if (cannotServe(s, known.version, known.epoch)) unableCount++;
      if (lockoutIsCertain(unableCount, { threshold: t, nodeCount })) throw new LockedOut();
    }
    const reasons: Record<string, string> = {};
    for (const [node, why] of failures) reasons[node.name] = why;
    throw new ClusterUnavailable(reasons, "cluster unavailable: no version is held by enough reachable nodes");
  }
  const { version, epoch } = candidate;
  let newerTombstones = 0;
  for (const s of answers.values()) if (s.tombstoneEpoch > epoch) newerTombstones++;
  if (newerTombstones >= t) throw new NotRegistered("the secret for this user was deleted");

  const holders: { node: NodeRef; info: VersionInfo; pending: boolean }[] = [];
  for (const [node, status] of answers) {
    for (const [info, isPending] of [
      [status.committed, false],
      [status.pending, true],
    ] as const) {
      if (info !== null && equal(info.version, version) && info.epoch === epoch) holders.push({ node, info, pending: isPending });
    }
  }
  const byParams = tally(holders.map((h) => [argon2Key(h.info.argon2), h.info.argon2] as [string, Argon2Params]));
  const top = mostCommon(byParams)!;
  const params = top.value;
  const suspects = holders.filter((h) => !sameArgon2(h.info.argon2, params)).map((h) => h.node);
  if (top.count < t) {
    throw new ProtocolError(
      holders.map((h) => h.node.name),
      "nodes disagree on the Argon2id parameters of the version",
    );
  }
  checkArgon2(params); // WeakParameters: a floor/ceiling violation, whoever reports it
  const ranked = holders
    .map((h) => ({ h, key: preference(user, h.node, h.info, h.pending, distrusted) }))
    .sort((a, b) => comparePreference(a.key, b.key))
    .map(({ h }) => h)
    .filter((h) => sameArgon2(h.info.argon2, params) && usable(h.info))
    .map((h) => [h.node, h.info.guessesRemaining] as const);
  const usableNodes = ranked.map(([node]) => node);
  const unable = [...answers].filter(([, status]) => cannotServe(status, version, epoch)).map(([node]) => node);
  if (usableNodes.length < t) {
    if (lockoutIsCertain(unable.length, { threshold: t, nodeCount })) throw new LockedOut();
    const reasons: Record<string, string> = {};
    for (const [node, why] of failures) reasons[node.name] = why;
    for (const node of unable) reasons[node.name] = "cannot serve the version";
    throw new ClusterUnavailable(
      reasons,
      `cluster unavailable: ${usableNodes.length} node(s) can serve the version, ${t} needed`,
    );
  }
  const pendingNodes = holders.filter((h) => h.pending && sameArgon2(h.info.argon2, params)).map((h) => h.node);
  const limits = tally(
    holders
      .filter((h) => sameArgon2(h.info.argon2, params) && h.info.maxGuesses)
      .map((h) => [String(h.info.maxGuesses), h.info.maxGuesses] as [string, number]),
  );
  return {
    version,
    epoch,
    argon2: params,
    nodes: usableNodes,
    pendingNodes,
    suspects,
    maxGuesses: mostCommon(limits)?.value ?? 0,
    cannotServe: unable,
    guesses: ranked,
  };
}

/**
 * How many more wrong guesses recovery can absorb after a wrong one: the t-th largest count
 * over every node that can serve the version, the asked nodes' counts from their Recover2
 * replies (this guess included), the others' from Recover1.
 */
export function guessesLeft(
  choice: VersionChoice,
  replies: ReadonlyMap<NodeRef, Recover2Reply>,
  options: { threshold: number },
): number {
  const counts = new Map<NodeRef, number>(choice.guesses);
  for (const [node, reply] of replies) counts.set(node, reply.guessesRemaining);
  const ranked = [...counts.values()].sort((a, b) => b - a);
  return ranked.length >= options.threshold ? (ranked[options.threshold - 1] as number) : 0;
}

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
