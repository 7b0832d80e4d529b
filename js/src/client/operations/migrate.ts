/**
 * Recovery from a previous node configuration, and migration into the current one.
 *
 * A manifest may list `previousConfigurations`: node sets users registered on before the
 * operator moved the cluster. When the current nodes have never heard of a user (more than
 * n - t of them answer with no version and no tombstone) the SDK tries the previous
 * configurations in the manifest's order; on success it registers the secret under the same
 * password on the current nodes (keeping the guess limit). A tombstone or any version on the
 * current nodes means the user is known there: a deleted secret cannot come back.
 */
import { NotRegistered, PakrError } from "../../core/errors.js";
import { isEmpty, type NodeRef, type UserRef, type UserStatus } from "../../core/messages.js";
import type { ClusterContext } from "../cluster.js";
import { readStates, recover, recoverOutcome } from "./recover.js";
import { register } from "./register.js";

/** Whether the current nodes show no trace of the user (so an old cluster may hold it). */
export function unknownToCluster(ctx: ClusterContext, answers: ReadonlyMap<NodeRef, UserStatus>): boolean {
  if ([...answers.values()].some((status) => !isEmpty(status))) return false;
  return answers.size > ctx.nodeCount - ctx.threshold;
}

/** Recover from the current nodes, else from a previous configuration and migrate. */
export async function recoverOrMigrate(
  ctx: ClusterContext,
  previous: readonly ClusterContext[],
  user: UserRef,
  password: Uint8Array,
): Promise<Uint8Array> {
  try {
    return await recover(ctx, user, password);
  } catch (notHere) {
    if (!(notHere instanceof NotRegistered) || previous.length === 0) throw notHere;
    const [answers] = await readStates(ctx, user, true);
    if (!unknownToCluster(ctx, answers)) throw notHere;
    let failure: PakrError = notHere;
    for (const old of previous) {
      let recovered;
      try {
        recovered = await recoverOutcome(old, user, password, false);
      } catch (error) {
        if (error instanceof NotRegistered) continue;
        if (error instanceof PakrError) {
          failure = error; // e.g. the old nodes are gone: keep looking
          continue;
        }
        throw error;
      }
      await migrate(ctx, user, password, recovered.secret, recovered.maxGuesses);
      return recovered.secret;
    }
    throw failure;
  }
}

async function migrate(
  ctx: ClusterContext,
  user: UserRef,
  password: Uint8Array,
  secret: Uint8Array,
  maxGuesses: number,
): Promise<void> {
  try {
    await register(ctx, user, password, secret, maxGuesses);
  } catch (error) {
    if (!(error instanceof PakrError)) throw error;
    // The secret is recovered; migration is retried next time.
    ctx.log.warn(`recover: could not migrate the user to the current nodes: ${error.message}`);
    return;
  }
  ctx.log.info("recover: migrated the user from a previous configuration");
}
