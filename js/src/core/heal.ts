/**
 * Filling missing copies after a successful recovery (docs/protocol.md §4b): the decisions.
 * Re-registering the recovered secret on every node is safe only as a compare-and-swap on the
 * recovered version: {@link fillWanted} only when a node that answered holds no usable copy and
 * nothing newer was seen; {@link newerSeen} checked again on the fill's own Register1 answers,
 * aborting (never retrying) on anything newer. At most one fill per recovery.
 */
import { equal } from "./bytes.js";
import type { NodeRef, UserStatus } from "./messages.js";

function holds(status: UserStatus, version: Uint8Array): boolean {
  return [status.committed, status.pending].some((info) => info !== null && equal(info.version, version) && !info.locked);
}

/** Whether any node reports something newer than `(version, epoch)`. */
export function newerSeen(statuses: Iterable<UserStatus>, version: Uint8Array, epoch: bigint): boolean {
  for (const status of statuses) {
    if (status.tombstoneEpoch >= epoch) return true;
    for (const info of [status.committed, status.pending]) {
      if (info === null) continue;
      if (info.epoch > epoch || (info.epoch === epoch && !equal(info.version, version))) return true;
    }
  }
  return false;
}

/** The nodes that answered but hold no usable copy of `version` (none, older, locked). */
export function missingCopies(answers: ReadonlyMap<NodeRef, UserStatus>, version: Uint8Array): NodeRef[] {
  return [...answers]
    .filter(([, status]) => !holds(status, version))
    .map(([node]) => node)
    .sort((a, b) => a.index - b.index);
}

/** After a recovery of `(version, epoch)`: re-register the secret on every node? */
export function fillWanted(answers: ReadonlyMap<NodeRef, UserStatus>, version: Uint8Array, epoch: bigint): boolean {
  return missingCopies(answers, version).length > 0 && !newerSeen(answers.values(), version, epoch);
}
