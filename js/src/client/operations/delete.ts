/**
 * Delete (docs/protocol.md §5): tombstone every version of the user at a new epoch.
 *
 * Register1 finds the highest epoch any node holds; Delete goes to every node with one above
 * it, so a node that missed the delete can never bring the secret back. Success needs
 * `registerThreshold` acknowledgements; a Conflict starts over a bounded number of times. A
 * user no answering node holds any version of raises NotRegistered (a typo in a user id must
 * not read as "deleted"); a delete interrupted part-way can be finished by calling it again.
 */
import { deleteEpoch } from "../../core/delete.js";
import { Conflict, NotRegistered } from "../../core/errors.js";
import type { UserRef } from "../../core/messages.js";
import type { ClusterContext } from "../cluster.js";
import { MAX_CONFLICT_RETRIES, readStates } from "./register.js";

/** Replace every version of `user` with a tombstone on at least r nodes. */
export async function deleteUser(ctx: ClusterContext, user: UserRef): Promise<void> {
  const r = ctx.registerThreshold;
  for (let round = 1; round <= MAX_CONFLICT_RETRIES; round++) {
    const states = await readStates(ctx, user, r);
    if ([...states.values()].every((s) => s.committed === null && s.pending === null)) {
      throw new NotRegistered(
        `no secret is registered for ${JSON.stringify(user.userId)} (never registered, or` +
          " already deleted); nothing was deleted",
      );
    }
    const tolerate = Math.max(1, ctx.nodeCount - ctx.threshold);
    const request = { epoch: deleteEpoch([...states.values()], { tolerate }) };
    const result = await ctx.step(
      "delete",
      user,
      ctx.nodes,
      (transport, token, options) => transport.delete(user, token, request, options),
      { need: r, waitAll: true, freshToken: true },
    );
    if (result.replies.size >= r) return;
    const failure = result.failure(r);
    if (!(failure instanceof Conflict) || round === MAX_CONFLICT_RETRIES) throw failure;
    ctx.log.info("delete: a concurrent registration raced ahead; starting over");
  }
}
