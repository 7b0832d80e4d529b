/**
 * How the SDK talks to one node: the `NodeTransport` seam.
 *
 * Everything above this module speaks protocol values (`core/messages`); only the transports
 * (`connect-transport.ts`, over gRPC in Node.js or the web listener in a browser) know about
 * protobuf, HTTP and metadata. Tests replace a transport with a fake, or wrap one to make a
 * node misbehave.
 *
 * A node's answer is a reply, a `NodeRefusal` (the node said no, with a typed `ErrorKind`
 * from the `pakr-error-bin` trailer), a `NodeUnreachable` (no answer: connection refused,
 * deadline, draining) or a `MalformedMessage` (the node answered garbage, which the caller
 * treats as misbehaviour).
 */
export { NodeUnreachable } from "../core/errors.js";
import type {
  AuditRow,
  Delete,
  NodeRef,
  Recover2,
  Recover2Reply,
  Recover3,
  Recover3Reply,
  Register2,
  Register3,
  ResetGuesses,
  UserRef,
  UserStatus,
} from "../core/messages.js";

/** Per-call options: the deadline (seconds) and a signal that cancels the call. */
export interface CallOptions {
  readonly timeout: number;
  readonly signal?: AbortSignal;
}

/**
 * One node's RPCs as the protocol sees them (the SDK's test seam).
 *
 * `token` is the access token for this call (minted for this node). Methods reject with
 * `NodeRefusal`, `NodeUnreachable` or `MalformedMessage`; nothing else.
 */
export interface NodeTransport {
  readonly node: NodeRef;
  register1(user: UserRef, token: string, options: CallOptions): Promise<UserStatus>;
  register2(user: UserRef, token: string, request: Register2, options: CallOptions): Promise<void>;
  register3(user: UserRef, token: string, request: Register3, options: CallOptions): Promise<void>;
  recover1(user: UserRef, token: string, options: CallOptions): Promise<UserStatus>;
  recover2(
    user: UserRef,
    token: string,
    request: Recover2,
    options: CallOptions,
  ): Promise<Recover2Reply>;
  recover3(
    user: UserRef,
    token: string,
    request: Recover3,
    options: CallOptions,
  ): Promise<Recover3Reply>;
  resetGuesses(
    user: UserRef,
    token: string,
    request: ResetGuesses,
    options: CallOptions,
  ): Promise<void>;
  delete(user: UserRef, token: string, request: Delete, options: CallOptions): Promise<void>;
  readAudit(
    user: UserRef,
    token: string,
    page: { afterId: number; limit: number },
    options: CallOptions,
  ): Promise<readonly AuditRow[]>;
  /** Release connections; the transport is not used afterwards. */
  close(): Promise<void>;
}
