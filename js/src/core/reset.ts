/**
 * Reset inside the recovery (docs/protocol.md §4a), client side: once the combination
 * matches, the client knows every node's unlock tag and proves it to the other holders of the
 * version over the single-use nonce each issued with Recover1, so guesses counted there before
 * this successful login stop counting. Sent alongside Recover3, once, never retried.
 */
import * as kdf from "./kdf.js";
import { type NodeRef, RESET_NONCE_LEN, type ResetGuesses, type UserStatus } from "./messages.js";
import { equal } from "./bytes.js";

/** The nonce's lifetime at the node (seconds): a late reset must not wipe later guesses. */
export const NONCE_TTL_SECONDS = 60;

/**
 * The nodes to reset: they hold `version` unlocked, are not among the `releasing` nodes
 * (Recover3 resets those), issued a nonce, and either counted this attempt (`evaluated`) or
 * reported guesses spent. A node at its full count is skipped, so a quiet login writes nothing.
 */
export function resetTargets(
  answers: ReadonlyMap<NodeRef, UserStatus>,
  options: { version: Uint8Array; releasing: ReadonlySet<NodeRef>; evaluated: ReadonlySet<NodeRef> },
): NodeRef[] {
  const targets: NodeRef[] = [];
  for (const [node, status] of [...answers].sort((a, b) => a[0].index - b[0].index)) {
    if (options.releasing.has(node) || status.resetNonce.length !== RESET_NONCE_LEN) continue;
    for (const info of [status.committed, status.pending]) {
      if (info === null || !equal(info.version, options.version) || info.locked) continue;
      const spent = info.maxGuesses === 0 || info.guessesRemaining < info.maxGuesses;
      if (spent || options.evaluated.has(node)) targets.push(node);
      break;
    }
  }
  return targets;
}

/** One proof per target, under its unlock tag over its own nonce. */
export function resetRequests(
  unlockKey: Uint8Array,
  version: Uint8Array,
  answers: ReadonlyMap<NodeRef, UserStatus>,
  targets: readonly NodeRef[],
): Map<NodeRef, ResetGuesses> {
  const requests = new Map<NodeRef, ResetGuesses>();
  for (const node of targets) {
    const nonce = answers.get(node)!.resetNonce;
    const tag = kdf.unlockTag(unlockKey, node.nodeId);
    requests.set(node, { version, nonce, proof: kdf.resetProof(tag, version, nonce) });
  }
  return requests;
}
