/**
 * What a node's failure means to the application: node answers -> SDK errors (§7).
 *
 * The transport reports raw per-node failures (a typed `NodeRefusal`, a `NodeUnreachable`, a
 * malformed reply). This module maps each to the SDK error an application acts on, and a
 * failed step to the single most actionable error among its nodes. Only the typed
 * `ErrorKind` is used, never transport status codes or message text.
 */
import {
  ClusterUnavailable,
  Conflict,
  ErrorKind,
  InvalidAuth,
  MalformedMessage,
  NodeRefusal,
  NotRegistered,
  PakrError,
  ProtocolError,
  RateLimited,
  UpgradeRequired,
  mostActionable,
  NodeUnreachable,
} from "../core/errors.js";
import { type NodeRef } from "../core/messages.js";

// What a person can do about an unreachable node, by the words transports and the OS use
// for it (first match wins; the full text stays in `ClusterUnavailable.details`).
const SHORT_REASONS: readonly (readonly [readonly string[], string])[] = [
  [["connection refused", "econnrefused"], "connection refused (is the node running?)"],
  [["deadline exceeded", "deadline_exceeded", "timed out", "timeout"], "no answer in time"],
  [
    ["certificate", "ssl", "tls", "handshake", "self-signed", "self signed"],
    "TLS handshake failed (certificate not the one the manifest pins?)",
  ],
  [["name or service not known", "dns", "resolve", "enotfound"], "host name does not resolve"],
  [["no route", "network is unreachable", "host is unreachable"], "network unreachable"],
  [["connection reset", "socket closed", "broken pipe", "econnreset"], "connection dropped"],
  [["draining"], "shutting down (draining)"],
];
export const SHORT_REASON_LEN = 80;

function clip(text: string): string {
  const first = text.split("\n")[0] ?? "";
  return first.length <= SHORT_REASON_LEN ? first : first.slice(0, SHORT_REASON_LEN - 1) + "…";
}

function kindName(kind: ErrorKind): string {
  return (ErrorKind[kind] ?? "unspecified").toLowerCase();
}

/** A short, secret-free reason for one node's failure: what a person can act on. */
export function reason(error: PakrError): string {
  if (error instanceof NodeUnreachable) {
    const lowered = error.message.toLowerCase();
    for (const [needles, short] of SHORT_REASONS) {
      if (needles.some((needle) => lowered.includes(needle))) return short;
    }
    return clip(error.message);
  }
  if (error instanceof NodeRefusal) return clip(`${kindName(error.kind)}: ${error.message}`);
  return clip(error.message || error.name);
}

/** The full text of one node's failure, for logs. */
export function detail(error: PakrError): string {
  if (error instanceof NodeRefusal) return `${kindName(error.kind)}: ${error.message}`;
  return error.message || error.name;
}

/** The SDK error one node's failure stands for; `null` if it only means "no answer". */
export function classify(node: NodeRef, error: PakrError): PakrError | null {
  if (error instanceof NodeUnreachable) return null;
  const name = node.name;
  if (error instanceof MalformedMessage) {
    return new ProtocolError([name], `malformed reply: ${error.message}`);
  }
  if (!(error instanceof NodeRefusal)) return error;
  const message = `${name}: ${error.message}`;
  switch (error.kind) {
    case ErrorKind.INVALID_AUTH:
      return new InvalidAuth(`${name} rejected the access token: ${error.message}`);
    case ErrorKind.NOT_REGISTERED:
      return new NotRegistered();
    case ErrorKind.NO_GUESSES:
    case ErrorKind.LOCKED:
      // One node's "locked" is a claim, not a lockout: recovery decides LockedOut by
      // counting (core lockoutIsCertain); alone it means "cannot serve".
      return null;
    case ErrorKind.RATE_LIMITED:
      return new RateLimited(error.retryAfter ?? 1.0);
    case ErrorKind.UPGRADE_REQUIRED:
      return new UpgradeRequired(message);
    case ErrorKind.CONFLICT:
      return new Conflict(`concurrent registration for this user (${message}); try again`);
    case ErrorKind.STALE_ATTEMPT:
      // Another client's recovery of the same user replaced ours at this node.
      return new Conflict(`another recovery of this user ran at the same time (${name}); try again`);
    case ErrorKind.UNAVAILABLE:
    case ErrorKind.INTERNAL:
    case ErrorKind.UNSPECIFIED:
      return null;
    default:
      // INVALID_REQUEST, BAD_UNLOCK_TAG: this client computed the request correctly, so the
      // node (or the cluster's state) is inconsistent.
      return new ProtocolError([name], error.message);
  }
}

/**
 * The error to raise when `step` got `have` good answers out of `need`: the most actionable
 * classified error, `ClusterUnavailable` (naming every failed node and why) only when
 * nothing more specific was reported.
 */
export function stepFailure(
  step: string,
  errors: ReadonlyMap<NodeRef, PakrError>,
  have: number,
  need: number,
): PakrError {
  const reasons: Record<string, string> = {};
  const details: Record<string, string> = {};
  const candidates: PakrError[] = [];
  for (const [node, err] of errors) {
    reasons[node.name] = reason(err);
    details[node.name] = detail(err);
    const mapped = classify(node, err);
    if (mapped !== null) candidates.push(mapped);
  }
  candidates.push(
    new ClusterUnavailable(reasons, `cluster unavailable: ${have} node(s) answered, ${need} needed`, {
      details,
      answered: have,
      needed: need,
    }),
  );
  void step;
  return mostActionable(candidates);
}
