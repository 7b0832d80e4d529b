/**
 * Status: what each node reports for a user, and whether the secret is recoverable.
 *
 * Read-only (Recover1 at every node, spends nothing). The verdict uses the same
 * committed-first version choice as recovery.
 */
import { toHex } from "../../core/bytes.js";
import { InvalidPassword, LockedOut, NotRegistered, PakrError } from "../../core/errors.js";
import { type NodeRef, type UserRef, type UserStatus } from "../../core/messages.js";
import { chooseVersion } from "../../core/recover.js";
import type { ClusterContext } from "../cluster.js";
import { reason, stepFailure } from "../refusals.js";
import { readStates } from "./recover.js";

/** One node's view of the user, or why it did not answer. */
export interface NodeStatus {
  readonly name: string;
  readonly nodeId: string;
  readonly index: number;
  readonly reachable: boolean;
  readonly registered: boolean;
  /** Of the version recovery would use, when this node has it. */
  readonly guessesRemaining: number | null;
  readonly locked: boolean;
  /** Holds a newer pending (uncommitted) version. */
  readonly pending: boolean;
  /** Holds a tombstone. */
  readonly deleted: boolean;
  readonly error: string | null;
}

/**
 * The cluster's view of one user. `registered` is true when a version can be recovered (or
 * is locked out), false when the cluster says the user has no secret, null when the answers
 * do not settle it. `guessesRemaining` is how many wrong guesses recovery can still absorb.
 */
export interface StatusReport {
  readonly userId: string;
  readonly registered: boolean | null;
  readonly version: string | null;
  readonly guessesRemaining: number | null;
  readonly nodes: readonly NodeStatus[];
  readonly problem: string | null;
  /** Certain, by recovery's rule: no password opens it any more. */
  readonly lockedOut: boolean;
}

function sameBytes(a: Uint8Array, b: Uint8Array | null): boolean {
  return b !== null && a.length === b.length && a.every((v, i) => v === b[i]);
}

function nodeView(status: UserStatus | undefined, version: Uint8Array | null): readonly [boolean, number | null, boolean] {
  if (status === undefined) return [false, null, false];
  for (const info of [status.committed, status.pending]) {
    if (info != null && sameBytes(info.version, version)) return [true, info.guessesRemaining, info.locked];
  }
  return [status.committed != null || status.pending != null, null, false];
}

/** The version a locked-out user had: the one most nodes still report, locked or not. */
function lockedVersion(answers: ReadonlyMap<NodeRef, UserStatus>): Uint8Array | null {
  const held = new Map<string, { version: Uint8Array; count: number }>();
  for (const status of answers.values()) {
    for (const info of [status.committed, status.pending]) {
      if (info == null) continue;
      const key = toHex(info.version);
      const entry = held.get(key) ?? { version: info.version, count: 0 };
      entry.count += 1;
      held.set(key, entry);
    }
  }
  let best: { version: Uint8Array; count: number } | null = null;
  for (const entry of held.values()) if (best === null || entry.count > best.count) best = entry;
  return best?.version ?? null;
}

/** Ask every node about `user` and summarise. */
export async function status(ctx: ClusterContext, user: UserRef): Promise<StatusReport> {
  const [answers, errors] = await readStates(ctx, user, true);
  if (answers.size < ctx.threshold) throw stepFailure("recover1", errors, answers.size, ctx.threshold);
  let registered: boolean | null = null;
  let version: Uint8Array | null = null;
  let remaining: number | null = null;
  let problem: string | null = null;
  let lockedOut = false;
  try {
    const choice = chooseVersion(answers, new Map([...errors].map(([n, e]) => [n, reason(e)])), {
      threshold: ctx.threshold,
      nodeCount: ctx.nodeCount,
    });
    registered = true;
    version = choice.version;
  } catch (error) {
    if (error instanceof NotRegistered) [registered, problem] = [false, error.message];
    else if (error instanceof LockedOut) {
      [registered, problem, remaining, lockedOut] = [true, error.message, 0, true];
      version = lockedVersion(answers);
    } else if (error instanceof InvalidPassword) [registered, problem, remaining] = [true, error.message, 0];
    else if (error instanceof PakrError) [registered, problem] = [null, error.message];
    else throw error;
  }
  const nodes: NodeStatus[] = [];
  const counts: number[] = [];
  for (const node of [...ctx.nodes].sort((a, b) => a.index - b.index)) {
    const answer = answers.get(node);
    const [holds, guesses, lockedHere] = nodeView(answer, version);
    const locked = lockedHere || (lockedOut && guesses === 0);
    if (version !== null && guesses !== null && !locked) counts.push(guesses);
    const err = errors.get(node);
    nodes.push({
      name: node.name,
      nodeId: toHex(node.nodeId),
      index: node.index,
      reachable: answer !== undefined,
      registered: holds,
      guessesRemaining: guesses,
      locked,
      pending: answer !== undefined && answer.pending != null && !sameBytes(answer.pending.version, version),
      deleted: answer !== undefined && answer.tombstoneEpoch > 0n,
      error: err !== undefined ? reason(err) : null,
    });
  }
  if (version !== null && !lockedOut) {
    counts.sort((a, b) => b - a);
    remaining = counts.length >= ctx.threshold ? (counts[ctx.threshold - 1] as number) : 0;
  }
  return {
    userId: user.userId,
    registered,
    version: version !== null ? toHex(version) : null,
    guessesRemaining: remaining,
    nodes,
    problem,
    lockedOut,
  };
}
