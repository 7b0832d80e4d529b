/**
 * Reading the nodes' audit logs: who registered, spent a guess, was locked out, deleted.
 *
 * Every node keeps its own append-only audit log, readable with an audit-scope token for a
 * whole tenant or one user. `readAudit` asks every node and merges the rows by time into one
 * page; the page's `cursor` (each node's last row id) continues where it stopped. A node that
 * does not answer is named in `unreachable` and its rows are picked up by a later page.
 */
import { ConfigError } from "../core/errors.js";
import { type AuditRow } from "../core/messages.js";
import type { ClusterContext } from "./cluster.js";
import { reason } from "./refusals.js";
import { TokenCache, type TokenProvider } from "./tokens.js";

/** The nodes' own limit per ReadAudit. */
export const MAX_PAGE = 1000;
/** The user id audit token providers are asked for when reading a whole tenant's log. */
export const TENANT_WIDE_SUBJECT = "*";

/** One audit row of one node. */
export interface AuditEvent {
  readonly node: string;
  readonly nodeIndex: number;
  readonly id: number;
  readonly time: number;
  readonly userId: string;
  readonly op: string;
  readonly outcome: string;
  readonly peer: string;
}

/** Events of every node that answered, oldest first; pass `cursor` back for the next page. */
export interface AuditPage {
  readonly events: readonly AuditEvent[];
  readonly cursor: string;
  readonly more: boolean;
  readonly unreachable: Readonly<Record<string, string>>;
}

/** `"1:17,2:20"` -> {node index: last row id seen}. */
export function parseCursor(cursor: string | null | undefined): Map<number, number> {
  const positions = new Map<number, number>();
  if (!cursor) return positions;
  for (const item of cursor.split(",")) {
    const [index, after] = item.split(":");
    if (!/^\d+$/.test(index ?? "") || !/^\d+$/.test(after ?? "")) {
      throw new ConfigError(`not an audit cursor: ${JSON.stringify(cursor)} (pass back a page's cursor)`);
    }
    positions.set(Number(index), Number(after));
  }
  return positions;
}

export function formatCursor(positions: ReadonlyMap<number, number>): string {
  return [...positions]
    .sort(([a], [b]) => a - b)
    .map(([index, after]) => `${index}:${after}`)
    .join(",");
}

/** One merged page of the audit logs of every node. */
export async function readAudit(
  ctx: ClusterContext,
  tokenProvider: TokenProvider,
  userId: string | null,
  cursor: string | null,
  limit: number,
): Promise<AuditPage> {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    throw new ConfigError(`limit must be 1..${MAX_PAGE}, not ${limit}`);
  }
  const after = parseCursor(cursor);
  const headerUser = { tenant: ctx.tenant, userId: userId ?? "" };
  const tokenUser = { tenant: ctx.tenant, userId: userId ?? TENANT_WIDE_SUBJECT };
  // Audit tokens have their own provider and must not share the user-token cache.
  const auditCtx = ctx.with({ tokenProvider, tokens: new TokenCache() });
  const result = await auditCtx.step(
    "read_audit",
    tokenUser,
    ctx.nodes,
    (transport, token, options) =>
      transport.readAudit(headerUser, token, { afterId: after.get(transport.node.index) ?? 0, limit }, options),
    { need: 1, waitAll: true },
  );
  if (result.replies.size === 0) throw result.failure(1);
  const merged: AuditEvent[] = [];
  for (const [node, rows] of result.replies) {
    for (const row of rows as readonly AuditRow[]) {
      merged.push({
        node: node.name,
        nodeIndex: node.index,
        id: Number(row.id),
        time: row.time,
        userId: row.userId,
        op: row.op,
        outcome: row.outcome,
        peer: row.peer,
      });
    }
  }
  merged.sort((a, b) => a.time - b.time || a.nodeIndex - b.nodeIndex || a.id - b.id);
  const page = merged.slice(0, limit);
  const positions = new Map(ctx.nodes.map((n) => [n.index, after.get(n.index) ?? 0] as const));
  for (const event of page) {
    positions.set(event.nodeIndex, Math.max(positions.get(event.nodeIndex) ?? 0, event.id));
  }
  const more = merged.length > limit || [...result.replies.values()].some((rows) => rows.length === limit);
  const unreachable: Record<string, string> = {};
  for (const [node, err] of result.errors) unreachable[node.name] = reason(err);
  return { events: page, cursor: formatCursor(positions), more, unreachable };
}
