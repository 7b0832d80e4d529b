/**
 * Every successful login heals (docs/protocol.md §4a, §4b): guess counts and missing copies.
 *
 * `resetCounts` sends ResetGuesses to the holders of the recovered version that do not
 * release a share, alongside Recover3: once, never retried (a late reset would wipe guesses
 * counted after the login), within the step's deadline. `fill` re-registers the secret under
 * the same password when a node that answered holds no copy of the recovered version: a
 * compare-and-swap on that version (core `heal`), one pass, never retried.
 */
import { PakrError } from "../../core/errors.js";
import { fillWanted, newerSeen } from "../../core/heal.js";
import { type NodeRef, type ResetGuesses, type UserRef, type UserStatus } from "../../core/messages.js";
import type { VersionChoice } from "../../core/recover.js";
import type { ClusterContext } from "../cluster.js";
import { reason } from "../refusals.js";
import { readStates, registerOnce } from "./register.js";

/** ResetGuesses at each node of `requests`, once; resolves to how many reset. */
export async function resetCounts(
  ctx: ClusterContext,
  user: UserRef,
  requests: ReadonlyMap<NodeRef, ResetGuesses>,
): Promise<number> {
  if (requests.size === 0) return 0;
  let result;
  try {
    result = await ctx.step(
      "reset",
      user,
      [...requests.keys()],
      (transport, token, options) =>
        transport.resetGuesses(user, token, requests.get(transport.node) as ResetGuesses, options),
      { need: requests.size, retry: false, waitAll: true },
    );
  } catch (error) {
    if (!(error instanceof PakrError)) throw error;
    ctx.log.info(`recover: no guess count was reset: ${error.message}`);
    return 0;
  }
  for (const [node, err] of result.errors) {
    ctx.log.info(`recover: ${node.name} did not reset its guess count: ${reason(err)}`);
  }
  return result.replies.size;
}

/** Re-register `secret` on every node if a node that answered lacks the recovered version,
 * with its signed guess limit `maxGuesses`; abort (never retry) if anything newer shows up.
 * True when a fill committed. */
export async function fill(
  ctx: ClusterContext,
  user: UserRef,
  password: Uint8Array,
  secret: Uint8Array,
  choice: VersionChoice,
  answers: ReadonlyMap<NodeRef, UserStatus>,
  maxGuesses: number,
): Promise<boolean> {
  if (!fillWanted(answers, choice.version, choice.epoch)) return false;
  try {
    const states = await readStates(ctx, user, ctx.registerThreshold);
    if (newerSeen([...states.values()], choice.version, choice.epoch)) {
      ctx.log.info("recover: a newer registration exists; the copies are not filled");
      return false;
    }
    await registerOnce(ctx, user, password, secret, maxGuesses, "replace", states);
  } catch (error) {
    if (!(error instanceof PakrError)) throw error;
    ctx.log.info(`recover: could not fill the missing copies (not retried): ${error.message}`);
    return false;
  }
  ctx.log.info("recover: re-registered the secret on every node (missing copies filled)");
  return true;
}
