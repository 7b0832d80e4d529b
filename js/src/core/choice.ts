/**
 * Which version a recovery uses (docs/protocol.md §4 step 2), decided from Recover1's answers:
 * {@link settled} says when the answers so far decide it, {@link chooseVersion} decides it
 * (committed first, then held; the nodes to ask, in order), and the counting rules live here
 * once: {@link lockoutIsCertain} for `LockedOut` and {@link guessesLeft} for what a wrong
 * password reports. Pure functions over the nodes' answers (Python: `pakr.proto.choice`).
 *
 * Maps keyed by node use the canonical {@link NodeRef} objects of `messages.nodeRef`.
 */
import { blake2b } from "@noble/hashes/blake2.js";
import { compareBytes, concat, equal, toHex, utf8 } from "./bytes.js";
import { ClusterUnavailable, LockedOut, NotRegistered, ProtocolError } from "./errors.js";
import { type Argon2Params, checkArgon2, sameArgon2 } from "./kdf.js";
import { type NodeRef, type Recover2Reply, type UserRef, type UserStatus, type VersionInfo, usable } from "./messages.js";

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
  /** Of those, hold a newer version: no lockout evidence (the registration moved on). */
  readonly movedOn: readonly NodeRef[];
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
 * Whether a node's answer holds a version newer than `epoch` (committed or pending): it cannot
 * serve the older version, but not because it is locked (another device changed the password,
 * a fill, a re-register), so it is never evidence for `LockedOut`, only for a conflict.
 */
export function holdsNewer(status: UserStatus, epoch: bigint): boolean {
  return [status.committed, status.pending].some((info) => info !== null && info.epoch > epoch);
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
  const movedOn = unable.filter((node) => holdsNewer(answers.get(node)!, epoch));
  if (usableNodes.length < t) {
    if (lockoutIsCertain(unable.length - movedOn.length, { threshold: t, nodeCount })) throw new LockedOut();
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
    movedOn,
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
