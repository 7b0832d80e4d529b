/**
 * The one exception hierarchy of pakr, rooted in {@link PakrError}: the same classes, names
 * and subclass relations as the Python SDK (`pakr.proto.errors` plus the SDK's own), so an
 * application catches `PakrError` and nothing else, and code ported from Python keeps its
 * `instanceof` checks. Messages say what happened and what to do next; they never carry a
 * password, a secret, a share or a token.
 */

/** Typed error kinds carried in the wire error detail (`ErrorDetail.kind`); never renumber. */
export enum ErrorKind {
  UNSPECIFIED = 0,
  INVALID_REQUEST = 1,
  INVALID_AUTH = 2,
  NOT_REGISTERED = 3,
  NO_GUESSES = 4,
  BAD_UNLOCK_TAG = 5,
  CONFLICT = 6,
  RATE_LIMITED = 7,
  UPGRADE_REQUIRED = 8,
  LOCKED = 9,
  UNAVAILABLE = 10,
  INTERNAL = 11,
  STALE_ATTEMPT = 12,
}

/** Root of every error pakr raises. */
export class PakrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * The cluster could not complete the call now; the same call may succeed later (retry after
 * a pause, with backoff; a recovery retried spends one more guess).
 */
export class TransientError extends PakrError {}

/** Calling again unchanged gives the same answer; something must change first. */
export class PermanentError extends PakrError {}

/** The password is wrong (or the version is locked out); `guessesRemaining` more are accepted. */
export class InvalidPassword extends PermanentError {
  readonly guessesRemaining: number;
  constructor(guessesRemaining: number, message?: string) {
    super(
      message ??
        (guessesRemaining > 0
          ? `invalid password: ${guessesRemaining} guess(es) remaining`
          : "invalid password: no guesses remaining; the secret is locked out"),
    );
    this.guessesRemaining = guessesRemaining;
  }
}

/**
 * The secret is locked out for certain: more than n - t of the nodes that answered hold it
 * locked, out of guesses, or no longer (`lockoutIsCertain`). Anything less certain is
 * {@link ClusterUnavailable}.
 */
export class LockedOut extends InvalidPassword {
  constructor(message?: string) {
    super(0, message ?? "locked out: too many wrong passwords; the secret is erased, register a new one");
  }
}

/** No secret is registered for this user (never registered, or deleted). */
export class NotRegistered extends PermanentError {
  constructor(message = "no secret is registered for this user") {
    super(message);
  }
}

/** The user already has a secret and the registration did not ask to replace it. */
export class AlreadyRegistered extends PermanentError {
  readonly version: string | null;
  constructor(message: string, version: string | null = null) {
    super(message);
    this.version = version;
  }
}

/** A node rejected the access token; mint a fresh token for that user and node. */
export class InvalidAuth extends PermanentError {}

/** Too many requests; retry after `retryAfter` seconds. */
export class RateLimited extends TransientError {
  readonly retryAfter: number;
  constructor(retryAfter: number, message?: string) {
    super(message ?? `rate limited: retry after ${retryAfter.toFixed(1)} s`);
    this.retryAfter = retryAfter;
  }
}

/** A node does not speak this client's protocol version; upgrade the SDK or the node. */
export class UpgradeRequired extends PermanentError {}

/** Another operation on the same user ran at the same time and won; try again. */
export class Conflict extends TransientError {}

/** `node1, node2: connection refused; node5: timeout`: one entry per distinct reason. */
export function groupReasons(reasons: Readonly<Record<string, string>>): string {
  const byReason = new Map<string, string[]>();
  for (const node of Object.keys(reasons).sort()) {
    const why = reasons[node] as string;
    const nodes = byReason.get(why) ?? [];
    nodes.push(node);
    byReason.set(why, nodes);
  }
  return [...byReason].map(([why, nodes]) => `${nodes.join(", ")}: ${why}`).join("; ");
}

/** Too few nodes answered to complete the operation; `reasons` says why, per node name. */
export class ClusterUnavailable extends TransientError {
  readonly reasons: Readonly<Record<string, string>>;
  readonly details: Readonly<Record<string, string>>;
  readonly answered: number | null;
  readonly needed: number | null;
  readonly summary: string;
  constructor(
    reasons: Readonly<Record<string, string>>,
    message?: string,
    options: { details?: Readonly<Record<string, string>>; answered?: number | null; needed?: number | null } = {},
  ) {
    const summary = message ?? "cluster unavailable: too few nodes answered";
    super(summary + (Object.keys(reasons).length ? ` (${groupReasons(reasons)})` : ""));
    this.reasons = { ...reasons };
    this.details = { ...(options.details ?? reasons) };
    this.answered = options.answered ?? null;
    this.needed = options.needed ?? null;
    this.summary = summary;
  }
}

/** A node misbehaved or the cluster is inconsistent; `nodes` names the culprits. */
export class ProtocolError extends PermanentError {
  readonly nodes: readonly string[];
  readonly reason: string;
  constructor(nodes: readonly string[], reason: string) {
    super(`protocol error from ${nodes.length ? nodes.join(", ") : "unknown node"}: ${reason}`);
    this.nodes = [...nodes];
    this.reason = reason;
  }
}

/** Argon2id parameters outside the client's floor/ceiling, or nodes disagree on them. */
export class WeakParameters extends PermanentError {}

/** Too few nodes committed a new registration; registering again with replace is safe. */
export class CommitIncomplete extends TransientError {}

/** A manifest, config file or argument is invalid; the message names what to fix. */
export class ConfigError extends PermanentError {}

/** A field read off the wire or from storage has the wrong length or encoding. */
export class MalformedMessage extends PakrError {}

/** A node-side refusal with a typed {@link ErrorKind}, as the transport reads it off the wire. */
export class NodeRefusal extends PakrError {
  readonly kind: ErrorKind;
  readonly guessesRemaining: number | null;
  readonly retryAfter: number | null;
  constructor(
    kind: ErrorKind,
    message: string,
    options: { guessesRemaining?: number | null; retryAfter?: number | null } = {},
  ) {
    super(message);
    this.kind = kind;
    this.guessesRemaining = options.guessesRemaining ?? null;
    this.retryAfter = options.retryAfter ?? null;
  }
}

/**
 * No usable answer from a node: refused connection, timeout, draining, TLS failure.
 * `transient` says whether retrying the same request may help (never for Recover2/Recover3).
 * (In Python this lives in the SDK's transport module; the TypeScript SDK keeps every error here.)
 */
export class NodeUnreachable extends TransientError {
  readonly transient: boolean;
  constructor(message: string, options: { transient?: boolean } = {}) {
    super(message);
    this.transient = options.transient ?? true;
  }
}

// Most actionable first (docs/protocol.md §7).
const ORDER: ReadonlyArray<abstract new (...args: never[]) => PakrError> = [
  InvalidPassword,
  NotRegistered,
  InvalidAuth,
  RateLimited,
  UpgradeRequired,
  Conflict,
  ProtocolError,
  ClusterUnavailable,
];

function rank(error: PakrError): number {
  const i = ORDER.findIndex((cls) => error instanceof cls);
  return i < 0 ? ORDER.length : i;
}

/** The error an application can act on best; ties keep the first one seen. */
export function mostActionable(errors: Iterable<PakrError>): PakrError {
  let best: PakrError | undefined;
  for (const e of errors) if (best === undefined || rank(e) < rank(best)) best = e;
  if (best === undefined) throw new RangeError("mostActionable() needs at least one error");
  return best;
}
