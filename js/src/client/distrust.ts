/**
 * Per-client memory of nodes that misbehaved: asked last until the memory expires.
 *
 * Recover1's `guessesRemaining` is a node's unauthenticated claim, and the client asks the
 * nodes with the fewest guesses left first. A node that lies about it would be asked first by
 * every recovery; once one of its replies has been set aside (failed verification, disagreed
 * with the nodes that unlocked the attempt, or did not decode), this client asks it last, for
 * `ttl` seconds, whatever it claims. The memory holds manifest nodes only (bounded by n).
 */
import type { NodeRef } from "../core/messages.js";

/** How long a set-aside node stays at the back of the queue (seconds). */
export const DEFAULT_TTL = 3600;

export type Clock = () => number;

/** Seconds on a monotonic clock. */
export const monotonic: Clock = () => performance.now() / 1000;

/** Nodes set aside recently by this client, each with the time its entry expires. */
export class Distrust {
  readonly ttl: number;
  private readonly clock: Clock;
  private readonly until = new Map<NodeRef, number>();

  constructor(ttl: number = DEFAULT_TTL, clock: Clock = monotonic) {
    this.ttl = ttl;
    this.clock = clock;
  }

  /** Put `nodes` at the back of the queue for the next `ttl` seconds. */
  remember(nodes: Iterable<NodeRef>): void {
    const until = this.clock() + this.ttl;
    for (const node of nodes) this.until.set(node, until);
  }

  /** The nodes to ask last now (expired entries are dropped). */
  current(): ReadonlySet<NodeRef> {
    const now = this.clock();
    for (const [node, until] of [...this.until]) if (until <= now) this.until.delete(node);
    return new Set(this.until.keys());
  }

  toString(): string {
    return `Distrust(${this.until.size} node(s), ttl=${this.ttl} s)`;
  }
}
