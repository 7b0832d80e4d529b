/**
 * Register (docs/protocol.md §3): Register1 -> epoch -> Argon2id -> Register2 -> Register3.
 *
 * The new version is stored as *pending* on the nodes and committed only once
 * `registerThreshold` (r) nodes hold it, so an interrupted registration or password change
 * never strands the secret: the old version stays committed until the new one is. A
 * `Conflict` (another registration for the same user raced ahead) starts over from Register1
 * a bounded number of times.
 */
import { toHex } from "../../core/bytes.js";
import {
  AlreadyRegistered,
  CommitIncomplete,
  ConfigError,
  Conflict,
  ErrorKind,
  InvalidAuth,
  InvalidPassword,
  NodeRefusal,
  NotRegistered,
  PakrError,
  UpgradeRequired,
} from "../../core/errors.js";
import {
  DEFAULT_MAX_GUESSES,
  type NodeRef,
  type Register2,
  type UserRef,
  type UserStatus,
} from "../../core/messages.js";
import { chooseVersion } from "../../core/recover.js";
import {
  checkRegistrationArgs,
  newVersion,
  prepareRegistration,
  registrationEpoch,
} from "../../core/register.js";
import type { ClusterContext } from "../cluster.js";
import { isTransient } from "../fanout.js";
import { stretch } from "../passwords.js";

export const MAX_CONFLICT_RETRIES = 3;
export const COMMIT_ROUNDS = 3;

/** What to do when the user already has a secret: refuse (the default) or replace it. */
export type IfExists = "refuse" | "replace";

/** What `Client.register` did: the new version (hex), and the one it replaced (null for a
 * new user; its secret cannot be recovered any more). */
export interface Registration {
  readonly version: string;
  readonly replaced: string | null;
}

/** Register1 at every node: each node's view of the user (>= `need` answers or throw). */
export async function readStates(
  ctx: ClusterContext,
  user: UserRef,
  need: number,
): Promise<Map<NodeRef, UserStatus>> {
  const result = await ctx.step(
    "register1",
    user,
    ctx.nodes,
    (transport, token, options) => transport.register1(user, token, options),
    { need },
  );
  return result.require(need);
}

/** Register3 at `nodes` until `need` committed, retrying the stragglers a few rounds.
 * Returns the nodes that committed; throws CommitIncomplete when fewer than `need`. */
export async function commit(
  ctx: ClusterContext,
  user: UserRef,
  version: Uint8Array,
  nodes: readonly NodeRef[],
  need: number,
): Promise<Set<NodeRef>> {
  const request = { version };
  const committed = new Set<NodeRef>();
  let errors = new Map<NodeRef, PakrError>();
  let todo = [...nodes];
  for (let round = 0; round < COMMIT_ROUNDS; round++) {
    const result = await ctx.step(
      "register3",
      user,
      todo,
      (transport, token, options) => transport.register3(user, token, request, options),
      { need, waitAll: true, freshToken: true },
    );
    for (const node of result.replies.keys()) committed.add(node);
    errors = new Map(result.errors);
    todo = todo.filter((node) => !committed.has(node));
    if (committed.size >= need || ![...errors.values()].some(isTransient)) break;
  }
  if (committed.size < need) {
    const why = [...errors]
      .sort(([a], [b]) => a.index - b.index)
      .map(([n, e]) => `${n.name}: ${e.message}`)
      .join("; ");
    throw new CommitIncomplete(
      `only ${committed.size} of the ${need} needed nodes committed the new registration` +
        ` (${why}); the new password may or may not be in force: call register again` +
        ' with ifExists: "replace"',
    );
  }
  return committed;
}

/**
 * Store `secret` under `password` for `user`.
 *
 * `maxGuesses=null` keeps the policy of the currently committed version (a password change),
 * or the default when there is none. `ifExists="refuse"` throws AlreadyRegistered when the
 * user has a secret (the public default; a password change and a migration replace).
 */
export async function register(
  ctx: ClusterContext,
  user: UserRef,
  password: Uint8Array,
  secret: Uint8Array,
  maxGuesses: number | null,
  ifExists: IfExists = "replace",
): Promise<Registration> {
  if (maxGuesses !== null) checkRegistrationArgs(secret, maxGuesses);
  if (ifExists !== "refuse" && ifExists !== "replace") {
    throw new ConfigError(`ifExists must be "refuse" or "replace", not ${JSON.stringify(ifExists)}`);
  }
  let lastConflict: Conflict | null = null;
  for (let i = 0; i < MAX_CONFLICT_RETRIES; i++) {
    try {
      return await registerOnce(ctx, user, password, secret, maxGuesses, ifExists);
    } catch (error) {
      if (!(error instanceof Conflict)) throw error;
      lastConflict = error;
      ctx.log.info("register: a concurrent registration won the race; starting over");
    }
  }
  throw lastConflict as Conflict;
}

function mostCommon<K>(items: Iterable<K>, keyOf: (item: K) => string): K | null {
  const counts = new Map<string, { item: K; count: number }>();
  for (const item of items) {
    const key = keyOf(item);
    const entry = counts.get(key);
    if (entry) entry.count += 1;
    else counts.set(key, { item, count: 1 });
  }
  let best: { item: K; count: number } | null = null;
  for (const entry of counts.values()) if (best === null || entry.count > best.count) best = entry;
  return best === null ? null : best.item;
}

/**
 * [whether `user` is registered, its version hex] by recovery's own rule: a version held by
 * t nodes (usable or locked out), decided by chooseVersion, so one node claiming a version
 * cannot make a new user look registered. Unsettled answers count as registered: a
 * registration must never replace a secret by accident.
 */
export function registeredVersion(
  ctx: ClusterContext,
  user: UserRef,
  states: ReadonlyMap<NodeRef, UserStatus>,
): readonly [boolean, string | null] {
  try {
    const choice = chooseVersion(states, new Map(), {
      threshold: ctx.threshold,
      nodeCount: ctx.nodeCount,
      user,
    });
    return [true, toHex(choice.version)];
  } catch (error) {
    if (error instanceof NotRegistered) return [false, null];
    if (error instanceof InvalidPassword) {
      // Locked out: registered, though no password opens it any more.
      const held = [...states.values()].flatMap((s) => (s.committed ? [toHex(s.committed.version)] : []));
      return [true, mostCommon(held, (v) => v)];
    }
    if (error instanceof PakrError) return [true, null];
    throw error;
  }
}

/**
 * One pass from Register1 to Register3; Conflict when a concurrent one interfered.
 *
 * `states` are Register1 answers the caller already holds (a fill checked them): every
 * node's Register2 then expects exactly the committed version it reported there.
 */
export async function registerOnce(
  ctx: ClusterContext,
  user: UserRef,
  password: Uint8Array,
  secret: Uint8Array,
  maxGuesses: number | null,
  ifExists: IfExists = "replace",
  states?: ReadonlyMap<NodeRef, UserStatus>,
): Promise<Registration> {
  const r = ctx.registerThreshold;
  const answers = states ?? (await readStates(ctx, user, r));
  const [registered, replaced] = registeredVersion(ctx, user, answers);
  if (registered && ifExists === "refuse") {
    const what = replaced ? `a secret (version ${replaced.slice(0, 12)}…)` : "what may be a secret";
    throw new AlreadyRegistered(
      `${JSON.stringify(user.userId)} already has ${what}; nothing was changed. To replace it` +
        ' (the old secret is then lost) pass ifExists: "replace"',
      replaced,
    );
  }
  const guesses = maxGuesses ?? currentPolicy(answers);
  checkRegistrationArgs(secret, guesses);
  const epoch = registrationEpoch([...answers.values()], {
    tolerate: Math.max(1, ctx.nodeCount - ctx.threshold),
  });
  const version = newVersion(ctx.rng);
  const { accessKey, encryptionKeySeed: seed } = await ctx.phase("argon2", () =>
    stretch(password, user, version, ctx.argon2),
  );
  const expected = new Map<string, Uint8Array | null>();
  for (const [node, status] of answers) {
    expected.set(toHex(node.nodeId), status.committed ? status.committed.version : null);
  }
  const plan = prepareRegistration({
    user,
    nodes: ctx.nodes,
    threshold: ctx.threshold,
    version,
    epoch,
    expected,
    accessKey,
    encryptionKeySeed: seed,
    secret,
    argon2: ctx.argon2,
    maxGuesses: guesses,
    rng: ctx.rng,
  });
  accessKey.fill(0);
  seed.fill(0);
  const requests: ReadonlyMap<string, Register2> = plan.requests;
  const result = await ctx.step(
    "register2",
    user,
    ctx.nodes,
    (transport, token, options) =>
      transport.register2(user, token, requests.get(toHex(transport.node.nodeId)) as Register2, options),
    { need: r, freshToken: true },
  );
  if (result.replies.size < r) {
    const failure = result.failure(r);
    const blocking = failure instanceof InvalidAuth || failure instanceof UpgradeRequired;
    const conflicted = [...result.errors.values()].some(
      (e) => e instanceof NodeRefusal && e.kind === ErrorKind.CONFLICT,
    );
    if (conflicted && !blocking) {
      throw new Conflict("a concurrent registration for this user won the race; try again");
    }
    if (result.replies.size > 0 && !blocking) {
      throw new CommitIncomplete(
        `only ${result.replies.size} of the ${r} needed nodes stored the new registration` +
          ` (${failure.message}); it may or may not be in force: call register again` +
          ' with ifExists: "replace"',
      );
    }
    throw failure;
  }
  const acked = [...result.replies.keys()].sort((a, b) => a.index - b.index);
  await commit(ctx, user, version, acked, r);
  return { version: toHex(version), replaced: registered ? replaced : null };
}

/**
 * The guess limit of a registration that does not name one: the limit most nodes report
 * for the highest-epoch committed version (the version's own), else the default.
 */
export function currentPolicy(states: ReadonlyMap<NodeRef, UserStatus>): number {
  const committed = [...states.values()].flatMap((s) => (s.committed ? [s.committed] : []));
  if (committed.length === 0) return DEFAULT_MAX_GUESSES;
  const top = committed.reduce((m, i) => (i.epoch > m ? i.epoch : m), committed[0]!.epoch);
  const limits = committed.filter((i) => i.epoch === top && i.maxGuesses > 0).map((i) => i.maxGuesses);
  return mostCommon(limits, String) ?? DEFAULT_MAX_GUESSES;
}
