/**
 * Send one protocol step to many nodes at once and collect enough answers.
 *
 * Every step goes to a set of nodes in parallel under one deadline. The step is done as soon
 * as it has the answers it needs plus a short *linger* (so a straggler a few milliseconds
 * behind still counts), or as soon as the needed number can no longer be reached. Transient
 * failures are retried with jittered exponential backoff inside the deadline, except for
 * Recover2/Recover3, which spend or consume a guess and are never retried automatically.
 * Failures are kept per node, so the SDK can name them (`refusals.ts`).
 */
import { ErrorKind, NodeRefusal, NodeUnreachable, PakrError } from "../core/errors.js";
import type { NodeRef } from "../core/messages.js";
import { stepFailure } from "./refusals.js";
import { monotonic } from "./distrust.js";

/** `(node, timeoutSeconds, signal) -> reply`: one attempt of a step at one node. */
export type NodeCall<T> = (node: NodeRef, timeout: number, signal: AbortSignal) => Promise<T>;

/**
 * Retries of transient failures: attempts per node and the backoff bounds (seconds). The
 * delay before retry k is uniform in [0, min(maxDelay, baseDelay·2^k)] ("full jitter"), and
 * never past the step's deadline.
 */
export class RetryPolicy {
  readonly attempts: number;
  readonly baseDelay: number;
  readonly maxDelay: number;
  /** A RateLimited refusal asking to wait at most this long is waited out and retried. */
  readonly maxRateLimitWait: number;

  constructor(
    options: { attempts?: number; baseDelay?: number; maxDelay?: number; maxRateLimitWait?: number } = {},
  ) {
    this.attempts = options.attempts ?? 3;
    this.baseDelay = options.baseDelay ?? 0.05;
    this.maxDelay = options.maxDelay ?? 0.5;
    this.maxRateLimitWait = options.maxRateLimitWait ?? 2.0;
  }

  /** The jittered pause before retry number `attempt` (1-based). */
  delay(attempt: number): number {
    return Math.random() * Math.min(this.maxDelay, this.baseDelay * 2 ** attempt);
  }
}

export const NO_RETRY = new RetryPolicy({ attempts: 1 });

/** Whether repeating the same request may get a different answer. */
export function isTransient(error: PakrError): boolean {
  if (error instanceof NodeUnreachable) return error.transient;
  return error instanceof NodeRefusal && error.kind === ErrorKind.UNAVAILABLE;
}

/** How long to wait before retrying after `error`, or null not to retry. */
export function retryPause(error: PakrError, attempt: number, retry: RetryPolicy): number | null {
  if (attempt >= retry.attempts) return null;
  if (isTransient(error)) return retry.delay(attempt);
  if (
    error instanceof NodeRefusal &&
    error.kind === ErrorKind.RATE_LIMITED &&
    error.retryAfter != null &&
    error.retryAfter > 0 &&
    error.retryAfter <= retry.maxRateLimitWait
  ) {
    return error.retryAfter;
  }
  return null;
}

/** The answers of one step: replies and failures, each by node. */
export class StepResult<T> {
  readonly replies = new Map<NodeRef, T>();
  readonly errors = new Map<NodeRef, PakrError>();
  constructor(readonly step: string) {}

  /** The error to raise because fewer than `need` nodes answered well. */
  failure(need: number): PakrError {
    return stepFailure(this.step, this.errors, this.replies.size, need);
  }

  /** The replies, or throw `failure` when there are fewer than `need`. */
  require(need: number): Map<NodeRef, T> {
    if (this.replies.size < need) throw this.failure(need);
    return this.replies;
  }
}

/** A sleep that ends early (resolving) when `signal` aborts. */
export function sleep(seconds: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, Math.max(0, seconds * 1000));
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

async function attemptAt<T>(
  node: NodeRef,
  call: NodeCall<T>,
  deadlineAt: number,
  retry: RetryPolicy,
  signal: AbortSignal,
): Promise<T> {
  let attempt = 0;
  for (;;) {
    attempt += 1;
    const remaining = deadlineAt - monotonic();
    if (remaining <= 0) throw new NodeUnreachable("deadline exceeded");
    try {
      return await call(node, remaining, signal);
    } catch (error) {
      if (!(error instanceof PakrError)) throw error;
      const pause = retryPause(error, attempt, retry);
      if (pause === null || monotonic() + pause >= deadlineAt || signal.aborted) throw error;
      await sleep(pause, signal);
      if (signal.aborted) throw error;
    }
  }
}

interface Outcome<T> {
  readonly node: NodeRef;
  readonly ok: boolean;
  readonly value?: T;
  readonly error?: unknown;
}

/**
 * One protocol step running at several nodes, its answers collected as they arrive.
 *
 * `fanOut` and `hedged` drive one; an operation drives it directly when it can act on part of
 * the answers while the rest are still coming (Recover1 settles the version at the t-th
 * agreeing answer, and the stragglers arrive while Argon2id runs). Every call shares one
 * deadline. `close` cancels what still runs and reports those nodes as not answering in
 * time. Errors other than PakrError (bugs) propagate from the waiting methods.
 */
export class InFlight<T> {
  readonly started = monotonic();
  readonly deadlineAt: number;
  readonly result: StepResult<T>;
  enoughAt: number | null = null;
  private readonly pending = new Map<NodeRef, AbortController>();
  private finished: Outcome<T>[] = [];
  private wake: (() => void) | null = null;
  private cutShort = false;

  constructor(
    step: string,
    private readonly call: NodeCall<T>,
    readonly deadline: number,
    private readonly retry: RetryPolicy = NO_RETRY,
  ) {
    this.deadlineAt = this.started + deadline;
    this.result = new StepResult(step);
  }

  /** Start the step at `node` (part of the same deadline). */
  launch(node: NodeRef): void {
    const controller = new AbortController();
    this.pending.set(node, controller);
    const settle = (outcome: Outcome<T>): void => {
      if (this.pending.get(node) !== controller) return; // closed meanwhile
      this.pending.delete(node);
      this.finished.push(outcome);
      this.wake?.();
    };
    attemptAt(node, this.call, this.deadlineAt, this.retry, controller.signal).then(
      (value) => settle({ node, ok: true, value }),
      (error: unknown) => settle({ node, ok: false, error }),
    );
  }

  /** How many nodes have not answered yet. */
  get running(): number {
    return this.pending.size;
  }

  /** Seconds since the step started. */
  elapsed(): number {
    return monotonic() - this.started;
  }

  private collect(): void {
    const done = this.finished;
    this.finished = [];
    let bug: unknown = undefined;
    for (const outcome of done) {
      if (outcome.ok) this.result.replies.set(outcome.node, outcome.value as T);
      else if (outcome.error instanceof PakrError) this.result.errors.set(outcome.node, outcome.error);
      else bug ??= outcome.error;
    }
    if (bug !== undefined) {
      this.close();
      throw bug;
    }
  }

  /** Wait until a running call finishes, or `until` (monotonic seconds, default the
   * deadline). False when nothing finished in time or nothing was running. */
  async waitOne(until?: number): Promise<boolean> {
    const limit = until === undefined ? this.deadlineAt : Math.min(until, this.deadlineAt);
    if (this.finished.length === 0) {
      const timeout = limit - monotonic();
      if (this.pending.size === 0 || timeout <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(finish, timeout * 1000);
        const wake = (): void => finish();
        this.wake = wake;
        function finish(): void {
          clearTimeout(timer);
          resolve();
        }
      });
      this.wake = null;
    }
    const any = this.finished.length > 0;
    this.collect();
    return any;
  }

  /** Wait until `need` replies plus the linger (see fanOut), every node (`waitAll`), the
   * deadline, or, sooner, until `settled(result)` says the answers so far decide the step
   * (the others keep running: call again, or close). */
  async gather(options: {
    need: number;
    linger: number;
    waitAll?: boolean;
    settled?: (result: StepResult<T>) => boolean;
  }): Promise<StepResult<T>> {
    const { need, linger, waitAll = false, settled } = options;
    while (this.pending.size > 0 || this.finished.length > 0) {
      this.collect();
      const now = monotonic();
      if (this.result.replies.size >= need && this.enoughAt === null) this.enoughAt = now;
      if (settled !== undefined && settled(this.result)) return this.result;
      if (this.pending.size === 0) break;
      let cutoff = this.deadlineAt;
      if (this.enoughAt !== null && !waitAll) {
        cutoff = Math.min(
          this.deadlineAt,
          this.enoughAt + Math.max(linger, this.enoughAt - this.started),
        );
      }
      if (now >= cutoff) {
        this.cutShort = cutoff < this.deadlineAt;
        break;
      }
      await this.waitOne(cutoff);
    }
    if (this.result.replies.size >= need && this.enoughAt === null) this.enoughAt = monotonic();
    return this.result;
  }

  /** Cancel the calls still running; report them as not answering in time. */
  close(): StepResult<T> {
    const finished = this.finished;
    this.finished = [];
    for (const outcome of finished) {
      if (outcome.ok) this.result.replies.set(outcome.node, outcome.value as T);
      else if (outcome.error instanceof PakrError) this.result.errors.set(outcome.node, outcome.error);
    }
    const pending = [...this.pending];
    this.pending.clear();
    for (const [, controller] of pending) controller.abort();
    const why =
      this.cutShort || monotonic() < this.deadlineAt
        ? "no answer before enough other nodes had answered"
        : `no answer within the ${this.deadline} s deadline`;
    for (const [node] of pending) this.result.errors.set(node, new NodeUnreachable(why));
    return this.result;
  }
}

/**
 * Run `call` at every node in parallel; return once `need` succeeded (+ linger).
 *
 * The linger after reaching `need` is max(linger, time taken so far): on a slow link
 * stragglers get as long again. `waitAll` waits for every node instead (up to the deadline).
 */
export async function fanOut<T>(
  step: string,
  nodes: readonly NodeRef[],
  call: NodeCall<T>,
  options: { need: number; deadline: number; retry?: RetryPolicy; linger?: number; waitAll?: boolean },
): Promise<StepResult<T>> {
  const flight = new InFlight(step, call, options.deadline, options.retry ?? NO_RETRY);
  for (const node of nodes) flight.launch(node);
  try {
    await flight.gather({
      need: options.need,
      linger: options.linger ?? 0.05,
      waitAll: options.waitAll ?? false,
    });
  } finally {
    flight.close();
  }
  return flight.result;
}

/**
 * Run `call` at the first `need` candidates only; bring in the next one for every failure,
 * and one more each `hedgeAfter` seconds without `need` replies.
 *
 * For the guess-spending steps (never retried): each node asked spends a guess, so ask as
 * few as the step needs, in the caller's order of preference, while a dead or stalled node
 * costs `hedgeAfter` rather than the whole deadline.
 */
export async function hedged<T>(
  step: string,
  candidates: readonly NodeRef[],
  call: NodeCall<T>,
  options: { need: number; deadline: number; hedgeAfter: number },
): Promise<StepResult<T>> {
  const { need, hedgeAfter } = options;
  const flight = new InFlight(step, call, options.deadline);
  const queue = [...candidates];
  let nextHedge = flight.started + hedgeAfter;
  try {
    while (flight.result.replies.size < need) {
      while (queue.length > 0 && flight.running + flight.result.replies.size < need) {
        flight.launch(queue.shift() as NodeRef);
      }
      if (flight.running === 0) break;
      if (await flight.waitOne(queue.length > 0 ? nextHedge : undefined)) continue;
      const now = monotonic();
      if (now >= flight.deadlineAt) break;
      if (queue.length > 0 && now >= nextHedge) {
        flight.launch(queue.shift() as NodeRef);
        nextHedge = now + hedgeAfter;
      }
    }
  } finally {
    flight.close();
  }
  return flight.result;
}
