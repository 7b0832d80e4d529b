/**
 * The cluster as one operation sees it: nodes, thresholds, transports, tokens, deadlines.
 *
 * `ClusterContext` is what every operation receives. It owns the per-node transports and the
 * token provider, and runs a protocol step at a set of nodes through `fanOut`, fetching a
 * token for the node on every attempt (nodes keep a `jti` replay cache, so a retried
 * Register2/3 or Delete needs a new one).
 */
import { ErrorKind, InvalidAuth, NodeRefusal, PakrError } from "../core/errors.js";
import { toHex } from "../core/bytes.js";
import type { Argon2Params } from "../core/kdf.js";
import { type NodeRef, type UserRef } from "../core/messages.js";
import type { Randomness } from "../core/randomness.js";
import { Distrust } from "./distrust.js";
import { InFlight, NO_RETRY, RetryPolicy, StepResult, fanOut, hedged, type NodeCall } from "./fanout.js";
import { TokenCache, fetchToken, type TokenProvider } from "./tokens.js";
import type { CallOptions, NodeTransport } from "./transport.js";

/** Instrumentation hook: `(phase, seconds)` after each phase ("argon2", "recover1", ...). */
export type PhaseObserver = (phase: string, seconds: number) => void;

/** `(transport, token, options) -> reply`: one RPC at one node. */
export type NodeStep<T> = (transport: NodeTransport, token: string, options: CallOptions) => Promise<T>;

/** Where the SDK reports what it did not raise (set-aside nodes, failed heals). */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

/** Quiet by default: a library does not write to the console unless asked. */
export const SILENT: Logger = { info: () => undefined, warn: () => undefined };

export interface ClusterFields {
  readonly tenant: string;
  readonly nodes: readonly NodeRef[];
  readonly threshold: number;
  readonly registerThreshold: number;
  readonly argon2: Argon2Params;
  readonly transports: ReadonlyMap<NodeRef, NodeTransport>;
  readonly tokenProvider: TokenProvider;
  readonly deadline: number;
  readonly retry: RetryPolicy;
  readonly linger: number;
  readonly rng: Randomness;
  readonly observer: PhaseObserver | null;
  readonly tokens: TokenCache;
  /** Nodes this client set aside recently: recovery asks them last (shared by copies). */
  readonly distrust: Distrust;
  readonly log: Logger;
}

export class ClusterContext implements ClusterFields {
  readonly tenant!: string;
  readonly nodes!: readonly NodeRef[];
  readonly threshold!: number;
  readonly registerThreshold!: number;
  readonly argon2!: Argon2Params;
  readonly transports!: ReadonlyMap<NodeRef, NodeTransport>;
  readonly tokenProvider!: TokenProvider;
  readonly deadline!: number;
  readonly retry!: RetryPolicy;
  readonly linger!: number;
  readonly rng!: Randomness;
  readonly observer!: PhaseObserver | null;
  readonly tokens!: TokenCache;
  readonly distrust!: Distrust;
  readonly log!: Logger;

  constructor(
    fields: Omit<ClusterFields, "retry" | "linger" | "observer" | "tokens" | "distrust" | "log"> &
      Partial<ClusterFields>,
  ) {
    Object.assign(this, {
      retry: new RetryPolicy(),
      linger: 0.05,
      observer: null,
      tokens: new TokenCache(),
      distrust: new Distrust(),
      log: SILENT,
      ...fields,
    });
  }

  /** A copy with some fields replaced (the token cache and distrust memory stay shared). */
  with(overrides: Partial<ClusterFields>): ClusterContext {
    return new ClusterContext({ ...(this as ClusterFields), ...overrides });
  }

  /** n, the number of nodes of this configuration. */
  get nodeCount(): number {
    return this.nodes.length;
  }

  /** A token for `user` at `node` (audience = the node id in hex). `fresh=false` allows a
   * cached one (for RPCs nodes do not replay-check). */
  async token(user: UserRef, node: NodeRef, fresh = true): Promise<string> {
    const audience = toHex(node.nodeId);
    if (!fresh) {
      const cached = this.tokens.get(user.userId, audience);
      if (cached !== null) return cached;
    }
    let token: string;
    try {
      token = await fetchToken(this.tokenProvider, user.userId, audience);
    } catch (error) {
      if (error instanceof PakrError) throw error;
      // The application's provider failed: report, don't crash.
      const kind = error instanceof Error ? error.name : typeof error;
      throw new InvalidAuth(`the token provider failed for ${node.name}: ${kind}`);
    }
    this.tokens.put(user.userId, audience, token);
    return token;
  }

  /** Run one RPC at `nodes` in parallel until `need` answered (see fanOut). `retry=false`
   * for Recover2/Recover3 and resets; `freshToken` for the RPCs nodes replay-check. */
  async step<T>(
    name: string,
    user: UserRef,
    nodes: readonly NodeRef[],
    rpc: NodeStep<T>,
    options: { need: number; retry?: boolean; waitAll?: boolean; freshToken?: boolean },
  ): Promise<StepResult<T>> {
    return await this.phase(name, () =>
      fanOut(name, nodes, this.nodeCall(user, rpc, options.freshToken ?? false), {
        need: options.need,
        deadline: this.deadline,
        retry: options.retry === false ? NO_RETRY : this.retry,
        linger: this.linger,
        waitAll: options.waitAll ?? false,
      }),
    );
  }

  /** Start a (retried) step at `nodes` and return it in flight (Recover1). */
  start<T>(name: string, user: UserRef, nodes: readonly NodeRef[], rpc: NodeStep<T>): InFlight<T> {
    const flight = new InFlight(name, this.nodeCall(user, rpc, false), this.deadline, this.retry);
    for (const node of nodes) flight.launch(node);
    return flight;
  }

  /** A guess-spending step (never retried) at the first `need` of `candidates`, bringing in
   * the next ones for failures and stragglers (see hedged). */
  async hedgedStep<T>(
    name: string,
    user: UserRef,
    candidates: readonly NodeRef[],
    rpc: NodeStep<T>,
    options: { need: number; hedgeAfter: number },
  ): Promise<StepResult<T>> {
    return await this.phase(name, () =>
      hedged(name, candidates, this.nodeCall(user, rpc, false), {
        need: options.need,
        deadline: this.deadline,
        hedgeAfter: options.hedgeAfter,
      }),
    );
  }

  private nodeCall<T>(user: UserRef, rpc: NodeStep<T>, freshToken: boolean): NodeCall<T> {
    return async (node, timeout, signal) => {
      const token = await this.token(user, node, freshToken);
      const transport = this.transports.get(node);
      if (transport === undefined) throw new Error(`no transport for ${node.name}`);
      try {
        return await rpc(transport, token, { timeout, signal });
      } catch (error) {
        if (error instanceof NodeRefusal && error.kind === ErrorKind.INVALID_AUTH) {
          this.tokens.forget(user.userId, toHex(node.nodeId));
        }
        throw error;
      }
    };
  }

  /** Time a phase for the observer (if any). */
  async phase<R>(name: string, body: () => Promise<R>): Promise<R> {
    if (this.observer === null) return await body();
    const start = performance.now();
    try {
      return await body();
    } finally {
      this.observer(name, (performance.now() - start) / 1000);
    }
  }
}
