/**
 * Delete (docs/protocol.md §5), client side: the tombstone's epoch is above every corroborated
 * epoch any node reported, so a stale node that missed the delete can never bring the secret back.
 */
import type { UserStatus } from "./messages.js";
import { registrationEpoch } from "./register.js";

/** The tombstone's epoch: 1 + the highest corroborated epoch (as for a register). */
export function deleteEpoch(statuses: Iterable<UserStatus>, options: { tolerate?: number } = {}): bigint {
  return registrationEpoch(statuses, options);
}
