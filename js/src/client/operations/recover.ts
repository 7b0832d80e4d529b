/**
 * Recover (docs/protocol.md §4): Recover1 -> choose version -> Argon2id -> Recover2 -> Recover3.
 *
 * Recover1 goes to every node, and the version is settled as soon as t of them agree on it
 * (core `settled`): Argon2id starts at once while the other answers arrive. Recover2 then
 * goes to t nodes only, in the order `chooseVersion` prefers, and to the next ones only when
 * one fails, stalls or misbehaves; Recover3 goes to the nodes whose evaluations unlocked the
 * attempt. Recover2 spends a guess at every node it reaches and Recover3 consumes the
 * attempt, so neither is retried automatically; the one exception is a Recover2 that got no
 * answer in time, asked once more when no other node is left (the same attempt id and
 * blinded element are a free replay at a node that counted it). A reply that does not
 * decode, combine or verify is set aside and replaced by a spare node's in the same attempt,
 * and this client asks that node last afterwards (`distrust.ts`); the culprits are named in
 * a warning when recovery succeeds anyway, in a ProtocolError otherwise. LockedOut only when
 * it is certain (core `lockoutIsCertain`). After a success, nodes holding the version only as
 * pending get a Register3 to roll them forward, the non-releasing holders' guess counts are
 * reset alongside Recover3, and missing copies are filled (`heal.ts`).
 */
import {
  ClusterUnavailable,
  Conflict,
  ErrorKind,
  LockedOut,
  MalformedMessage,
  NodeRefusal,
  NodeUnreachable,
  NotRegistered,
  PakrError,
  ProtocolError,
} from "../../core/errors.js";
import {
  type NodeRef,
  type Recover2Reply,
  type Recover3Reply,
  type UserRef,
  type UserStatus,
} from "../../core/messages.js";
import {
  PasswordMismatch,
  TooFewValid,
  admitSpares,
  attemptRequest,
  chooseVersion,
  finishRecover2,
  finishRecover3,
  guessesLeft,
  lockoutIsCertain,
  settled,
  startRecover2,
  verifyRecover3Reply,
  type RecoveryAttempt,
  type UnlockedAttempt,
  type VersionChoice,
} from "../../core/recover.js";
import { resetRequests, resetTargets } from "../../core/reset.js";
import type { ClusterContext, NodeStep } from "../cluster.js";
import { monotonic } from "../distrust.js";
import type { StepResult } from "../fanout.js";
import { stretch } from "../passwords.js";
import { reason, stepFailure } from "../refusals.js";
import { fill as healFill, resetCounts } from "./heal.js";

/** Recover1 at every node: the answers and the per-node failures. */
export async function readStates(
  ctx: ClusterContext,
  user: UserRef,
  waitAll = false,
): Promise<readonly [Map<NodeRef, UserStatus>, Map<NodeRef, PakrError>]> {
  const result = await ctx.step("recover1", user, ctx.nodes, recover1(user), {
    need: ctx.threshold,
    waitAll,
  });
  return [result.replies, result.errors];
}

function recover1(user: UserRef): NodeStep<UserStatus> {
  return (transport, token, options) => transport.recover1(user, token, options);
}

function reasons(errors: ReadonlyMap<NodeRef, PakrError>): Map<NodeRef, string> {
  return new Map([...errors].map(([node, err]) => [node, reason(err)]));
}

/** The committed-first version choice (§4 step 2) from the Recover1 answers so far. */
export function decide(ctx: ClusterContext, user: UserRef, answers: StepResult<UserStatus>): VersionChoice {
  if (answers.replies.size < ctx.threshold) {
    throw stepFailure("recover1", answers.errors, answers.replies.size, ctx.threshold);
  }
  return chooseVersion(answers.replies, reasons(answers.errors), {
    threshold: ctx.threshold,
    nodeCount: ctx.nodeCount,
    user,
    distrusted: ctx.distrust.current(),
  });
}

function sameArgon2(a: VersionChoice, b: VersionChoice): boolean {
  return (
    a.argon2.memoryKib === b.argon2.memoryKib &&
    a.argon2.iterations === b.argon2.iterations &&
    a.argon2.parallelism === b.argon2.parallelism
  );
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** The choice again with every answer in: the same version, with all the nodes that can
 * serve it (in order), the pending ones to roll forward and the suspects to name. */
function refine(
  ctx: ClusterContext,
  user: UserRef,
  early: VersionChoice,
  answers: StepResult<UserStatus>,
): VersionChoice {
  let full: VersionChoice;
  try {
    full = decide(ctx, user, answers);
  } catch (error) {
    if (error instanceof PakrError) return early; // cannot happen once settled
    throw error;
  }
  if (!sameBytes(full.version, early.version) || full.epoch !== early.epoch || !sameArgon2(full, early)) {
    return early;
  }
  return full;
}

/** A successful recovery: the secret, the version it came from, and what healing did. */
export interface Recovered {
  readonly secret: Uint8Array;
  readonly choice: VersionChoice;
  /** The version's own limit, from its signed policy (checked). */
  readonly maxGuesses: number;
  readonly resets: number;
  readonly filled: boolean;
}

/** Recover `user`'s secret with `password` (throws InvalidPassword when wrong). */
export async function recover(ctx: ClusterContext, user: UserRef, password: Uint8Array): Promise<Uint8Array> {
  return (await recoverOutcome(ctx, user, password)).secret;
}

/** `recover`, healing on success: guess counts reset alongside Recover3 (§4a), pending
 * holders rolled forward, and (with `fill`) missing copies filled by one compare-and-swap
 * re-registration (§4b). */
export async function recoverOutcome(
  ctx: ClusterContext,
  user: UserRef,
  password: Uint8Array,
  fill = true,
): Promise<Recovered> {
  const t = ctx.threshold;
  const flight = ctx.start("recover1", user, ctx.nodes, recover1(user));
  let early: VersionChoice;
  let earlyAnswer: boolean;
  let accessKey: Uint8Array;
  let seed: Uint8Array;
  let hedgeAfter: number;
  try {
    [early, earlyAnswer] = await ctx.phase("recover1", async () => {
      await flight.gather({
        need: t,
        linger: ctx.linger,
        settled: (r) => settled(r.replies, { threshold: t }),
      });
      const settledNow = settled(flight.result.replies, { threshold: t });
      if (!settledNow) {
        try {
          decide(ctx, user, flight.result);
        } catch (error) {
          if (!(error instanceof PakrError)) throw error;
          // Not decided by the answers so far: every answer before the deadline counts.
          await flight.gather({ need: ctx.nodeCount, linger: ctx.linger, waitAll: true });
        }
        flight.close(); // decided the usual way: the stragglers are too late
      }
      return [decide(ctx, user, flight.result), settledNow] as const;
    });
    hedgeAfter = Math.max(ctx.linger, 2 * flight.elapsed());
    ({ accessKey, encryptionKeySeed: seed } = await ctx.phase("argon2", () =>
      stretch(password, user, early.version, early.argon2),
    ));
    // Argon2id held this thread (JavaScript has no second one here), so answers that
    // arrived meanwhile are still queued as I/O events: give the stragglers as long as a
    // hedge (twice what Recover1 took to settle) to come in before the version choice is
    // refined, or they would be dropped and the ask
    // order (fewest guesses left first) decided on the first t answers alone, spreading
    // the guesses over more nodes than the Python SDK asks.
    await ctx.phase("recover1-rest", async () => {
      const graceEnd = monotonic() + hedgeAfter;
      while (flight.running > 0 && (await flight.waitOne(graceEnd)));
      await flight.gather({ need: t, linger: ctx.linger });
    });
  } finally {
    flight.close();
  }
  const choice = earlyAnswer ? refine(ctx, user, early, flight.result) : early;
  const answers = new Map(flight.result.replies);
  for (const node of choice.suspects) {
    ctx.log.warn(`recover: ignored ${node.name}: it reports other Argon2id parameters than the other nodes`);
  }
  const attempt = await startRecover2(user, choice, accessKey, seed, ctx.rng);
  const session = new Session(ctx, user, attempt, hedgeAfter);
  const unlocked = await session.evaluate();
  const targets = resetTargets(answers, {
    version: choice.version,
    releasing: new Set(unlocked.requests.keys()),
    evaluated: session.asked,
  });
  const resets = resetCounts(ctx, user, resetRequests(unlocked.unlockKey, choice.version, answers, targets));
  let secret: Uint8Array;
  let resetCount: number;
  try {
    secret = await session.release(unlocked);
  } finally {
    resetCount = await resets; // finished before returning, success or not
  }
  await rollForward(ctx, user, choice);
  const limit = unlocked.policy.maxGuesses;
  const filled = fill && (await healFill(ctx, user, password, secret, choice, answers, limit));
  return { secret, choice, maxGuesses: limit, resets: resetCount, filled };
}

/** Recover2 and Recover3 of one attempt: which nodes were asked, what they said. */
class Session {
  spares: NodeRef[];
  unanswered: NodeRef[] = [];
  unheard: NodeRef[];
  readonly askedTwice = new Set<NodeRef>();
  readonly replies = new Map<NodeRef, Recover2Reply>();
  readonly failures = new Map<NodeRef, PakrError>();
  readonly setAside = new Map<NodeRef, string>();

  constructor(
    readonly ctx: ClusterContext,
    readonly user: UserRef,
    readonly attempt: RecoveryAttempt,
    readonly hedgeAfter: number,
  ) {
    const choice = attempt.choice;
    this.spares = [...choice.nodes];
    const known = new Set([...choice.nodes, ...choice.cannotServe, ...choice.suspects]);
    // Recover1 gave no (timely) answer: they may hold the version; a last resort.
    this.unheard = ctx.nodes.filter((n) => !known.has(n));
  }

  /** Every node asked for a Recover2 in this attempt (each may have counted it). */
  get asked(): Set<NodeRef> {
    return new Set([...this.replies.keys(), ...this.failures.keys(), ...this.setAside.keys()]);
  }

  /** Recover2 at the next `need` spare nodes (more for failures and stragglers). */
  async ask(need: number): Promise<Map<NodeRef, Recover2Reply>> {
    const request = attemptRequest(this.attempt);
    const user = this.user;
    const step = await this.ctx.hedgedStep(
      "recover2",
      user,
      this.spares,
      (transport, token, options) => transport.recover2(user, token, request, options),
      { need, hedgeAfter: this.hedgeAfter },
    );
    const asked = new Set([...step.replies.keys(), ...step.errors.keys()]);
    this.spares = this.spares.filter((n) => !asked.has(n));
    for (const [node, error] of step.errors) this.failures.set(node, error);
    for (const [node, reply] of step.replies) {
      this.replies.set(node, reply);
      this.failures.delete(node); // answered when asked again
    }
    for (const [node, error] of step.errors) {
      if (error instanceof MalformedMessage) {
        this.markAside(new Map([[node, `malformed reply: ${error.message}`]]));
      } else if (error instanceof NodeUnreachable && !this.askedTwice.has(node)) {
        this.unanswered.push(node);
      }
    }
    return step.replies;
  }

  /** When no spare is left, ask the nodes whose Recover1 answer did not arrive in time, then
   * those that did not answer Recover2 in time, once more (a free replay where counted). */
  respare(): boolean {
    if (this.spares.length > 0) return true;
    if (this.unheard.length > 0) {
      [this.spares, this.unheard] = [this.unheard, []];
      return true;
    }
    if (this.unanswered.length === 0) return false;
    [this.spares, this.unanswered] = [this.unanswered, []];
    for (const node of this.spares) this.askedTwice.add(node);
    return true;
  }

  /** Name `nodes` as misbehaving in this attempt and ask them last from now on. */
  markAside(nodes: ReadonlyMap<NodeRef, string>): void {
    for (const [node, why] of nodes) {
      this.setAside.set(node, why);
      this.replies.delete(node);
    }
    this.ctx.distrust.remember(nodes.keys());
  }

  /** The error when no spare is left: LockedOut if certain, else a failure's kind if more
   * actionable than a protocol error, else the nodes set aside, else unavailable. */
  shortfall(step: string, have: number): PakrError {
    const unable = new Set<NodeRef>(this.attempt.choice.cannotServe);
    for (const [node, error] of this.failures) {
      if (
        error instanceof NodeRefusal &&
        [ErrorKind.LOCKED, ErrorKind.NO_GUESSES, ErrorKind.NOT_REGISTERED].includes(error.kind)
      ) {
        unable.add(node);
      }
    }
    if (lockoutIsCertain(unable.size, { threshold: this.ctx.threshold, nodeCount: this.ctx.nodeCount })) {
      return new LockedOut();
    }
    const error = replaced(stepFailure(step, this.failures, have, this.ctx.threshold));
    if (this.setAside.size > 0 && error instanceof ClusterUnavailable) {
      const why = [...this.setAside].map(([n, w]) => `${n.name}: ${w}`).join("; ");
      return new TooFewValid(this.setAside, why, { missing: this.ctx.threshold - have });
    }
    return error;
  }

  private warnSetAside(): void {
    for (const [node, why] of this.setAside) {
      this.ctx.log.warn(`recover: ignored ${node.name}'s evaluation: ${why}`);
    }
  }

  /** Recover2 at t nodes, more as needed, until the password checks out (or not). */
  async evaluate(): Promise<UnlockedAttempt> {
    const t = this.ctx.threshold;
    let extra = 0; // further replies needed beyond t (valid replies that disagree)
    for (;;) {
      const short = Math.max(t - this.replies.size, extra);
      if (short > 0) {
        if (!this.respare()) throw this.shortfall("recover2", this.replies.size);
        await this.ask(short);
        extra = 0;
        if (this.replies.size < t) continue;
      }
      let unlocked: UnlockedAttempt;
      try {
        unlocked = await this.ctx.phase("verify", async () =>
          finishRecover2(this.attempt, this.replies, { threshold: t }),
        );
      } catch (error) {
        if (error instanceof TooFewValid) {
          this.markAside(error.setAside);
          extra = error.missing;
          continue;
        }
        if (error instanceof PasswordMismatch) {
          this.markAside(error.setAside);
          this.warnSetAside();
          const valid = new Map([...this.replies].filter(([n]) => !this.setAside.has(n)));
          const left = guessesLeft(this.attempt.choice, valid, { threshold: t });
          throw new PasswordMismatch(left, error.setAside);
        }
        throw error;
      }
      this.markAside(unlocked.setAside);
      this.warnSetAside();
      return unlocked;
    }
  }

  /** Recover3 at the nodes that unlocked the attempt; bring in spares for shortfalls. */
  async release(first: UnlockedAttempt): Promise<Uint8Array> {
    let unlocked = first;
    const t = this.ctx.threshold;
    const shares = new Map<NodeRef, Recover3Reply>();
    const bad = new Map<NodeRef, string>();
    const silent = new Map<NodeRef, PakrError>();
    let ask: NodeRef[] = [...unlocked.requests.keys()];
    const groupReply = this.replies.get(ask[0] as NodeRef) as Recover2Reply;
    for (;;) {
      const step = await this.releaseAt(unlocked, ask);
      for (const [node, error] of step.errors) {
        if (error instanceof MalformedMessage) {
          bad.set(node, `malformed reply: ${error.message}`);
          this.ctx.distrust.remember([node]);
        } else {
          silent.set(node, error);
        }
      }
      for (const [node, share] of step.replies) shares.set(node, share);
      if (shares.size >= t) {
        try {
          const secret = await this.ctx.phase("decrypt", async () =>
            finishRecover3(unlocked, shares, { threshold: t }),
          );
          warnRelease(this.ctx, unlocked, shares, bad, silent, t);
          return secret;
        } catch (error) {
          if (!(error instanceof ProtocolError)) throw error;
        }
      }
      const forged = new Map<NodeRef, string>();
      for (const [node, share] of shares) {
        const why = verifyRecover3Reply(unlocked, node, share);
        if (why !== null) forged.set(node, why);
      }
      if (shares.size >= t && forged.size === 0) {
        throw new ProtocolError([...shares.keys()].map((n) => n.name), "the nodes' shares do not open the secret");
      }
      for (const [node, why] of forged) {
        bad.set(node, why);
        shares.delete(node);
      }
      this.ctx.distrust.remember(forged.keys());
      if (!this.respare()) {
        if (bad.size > 0) {
          const why = [...bad].map(([n, w]) => `${n.name}: ${w}`).join("; ");
          throw new ProtocolError([...bad.keys()].map((n) => n.name), why);
        }
        throw replaced(stepFailure("recover3", silent, shares.size, t));
      }
      const spare = await this.ask(t - shares.size);
      const { unlocked: admitted, setAside: aside } = admitSpares(unlocked, groupReply, spare);
      unlocked = admitted;
      for (const [node, why] of aside) bad.set(node, why);
      this.ctx.distrust.remember(aside.keys());
      ask = [...spare.keys()].filter((n) => !aside.has(n));
    }
  }

  /** Recover3 at `nodes` (each once: it consumes the attempt there). */
  private async releaseAt(unlocked: UnlockedAttempt, nodes: readonly NodeRef[]): Promise<StepResult<Recover3Reply>> {
    const user = this.user;
    return await this.ctx.step(
      "recover3",
      user,
      nodes,
      (transport, token, options) =>
        transport.recover3(user, token, unlocked.requests.get(transport.node)!, options),
      { need: nodes.length, retry: false, waitAll: true },
    );
  }
}

/** Recover2/Recover3 refused as NOT_REGISTERED: the nodes held the version at Recover1 and
 * no longer do, so a concurrent registration replaced it: a Conflict to start over. */
function replaced(error: PakrError): PakrError {
  if (error instanceof NotRegistered) {
    return new Conflict("the user's registration changed during this recovery; try again");
  }
  return error;
}

/** Name the nodes whose share was forged or missing although recovery succeeded. With
 * exactly t shares a success means every one was valid; only a surplus can hide a forged
 * share that was outvoted, so only then are they checked. */
function warnRelease(
  ctx: ClusterContext,
  unlocked: UnlockedAttempt,
  shares: ReadonlyMap<NodeRef, Recover3Reply>,
  bad: ReadonlyMap<NodeRef, string>,
  silent: ReadonlyMap<NodeRef, PakrError>,
  threshold: number,
): void {
  const named = new Map(bad);
  if (shares.size > threshold) {
    for (const [node, share] of shares) {
      const why = verifyRecover3Reply(unlocked, node, share);
      if (why !== null) named.set(node, why);
    }
  }
  for (const [node, why] of named) ctx.log.warn(`recover: ignored ${node.name}'s share: ${why}`);
  if (silent.size > 0) {
    ctx.log.warn(
      `recover: ${[...silent.keys()].map((n) => n.name).join(", ")} did not release a share; recovered with the others`,
    );
  }
}

/** Commit the recovered version on nodes holding it only as pending (best effort). */
export async function rollForward(ctx: ClusterContext, user: UserRef, choice: VersionChoice): Promise<void> {
  if (choice.pendingNodes.length === 0) return;
  const request = { version: choice.version };
  const result = await ctx.step(
    "roll-forward",
    user,
    choice.pendingNodes,
    (transport, token, options) => transport.register3(user, token, request, options),
    { need: choice.pendingNodes.length, waitAll: true, freshToken: true },
  );
  for (const [node, err] of result.errors) {
    ctx.log.warn(`recover: could not roll ${node.name} forward: ${reason(err)}`);
  }
}
