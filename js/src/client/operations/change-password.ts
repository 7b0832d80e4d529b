/**
 * Change password: recover with the old password, then register the secret under the new one.
 *
 * Crash-safe through the two-phase registration: the old version stays committed (and the old
 * password keeps working) until r nodes have committed the new version. The guess limit of
 * the recovered version (its own, from the policy signed with it) is kept unless a new one
 * is given.
 */
import type { UserRef } from "../../core/messages.js";
import type { ClusterContext } from "../cluster.js";
import { recoverOutcome } from "./recover.js";
import { register } from "./register.js";

/** Re-register `user`'s secret under `newPassword` (needs the old one). */
export async function changePassword(
  ctx: ClusterContext,
  user: UserRef,
  oldPassword: Uint8Array,
  newPassword: Uint8Array,
  maxGuesses: number | null = null,
): Promise<void> {
  const recovered = await recoverOutcome(ctx, user, oldPassword, false);
  await register(ctx, user, newPassword, recovered.secret, maxGuesses ?? recovered.maxGuesses);
}
