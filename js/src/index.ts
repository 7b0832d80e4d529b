/**
 * pakr: recover a long-term secret from a password, held by t-of-n share-servers.
 *
 * The TypeScript SDK for browsers and Node.js, byte-compatible with the Python SDK against
 * the same nodes:
 *
 *     const client = await Client.fromManifest(manifest, {
 *       operatorKey: "ed25519:...",   // the cluster operator's public key, pinned
 *       tenant: "acme",
 *       tokenProvider: (userId, audience) => fetchTokenFromYourBackend(userId, audience),
 *     });
 *     await client.register("alice", "correct horse battery staple", secret);
 *     const again = await client.recover("alice", "correct horse battery staple");
 *
 * In a browser the nodes are reached over their web listeners (the manifest's web_origin);
 * in Node.js (the package's "node" export condition) over gRPC with each node's certificate
 * pinned from the manifest. Every error is a `PakrError`.
 */
import { platform } from "./client/client.js";
import { webTransport } from "./client/web.js";

platform.transportFactory ??= webTransport;

export {
  AlreadyRegistered,
  PermanentError,
  TransientError,
  ClusterUnavailable,
  CommitIncomplete,
  ConfigError,
  Conflict,
  InvalidAuth,
  InvalidPassword,
  LockedOut,
  MalformedMessage,
  NodeRefusal,
  NodeUnreachable,
  NotRegistered,
  PakrError,
  ProtocolError,
  RateLimited,
  UpgradeRequired,
  WeakParameters,
} from "./core/errors.js";
export { INSECURE_UNPINNED, loadManifest, type Manifest, type ManifestNode } from "./core/manifest.js";
export type { AuditEvent, AuditPage } from "./client/audit.js";
export { Client, type ClientOptions, type FromManifestOptions, type TransportFactory } from "./client/client.js";
export type { Logger, PhaseObserver } from "./client/cluster.js";
export { RetryPolicy } from "./client/fanout.js";
export type { IfExists, Registration } from "./client/operations/register.js";
export type { NodeStatus, StatusReport } from "./client/operations/status.js";
export type { Password } from "./client/passwords.js";
export { devTokenProvider, type DevTokenProvider, type TokenProvider } from "./client/tokens.js";
export type { CallOptions, NodeTransport } from "./client/transport.js";
export { loadTrustedManifest, serialStateFromStorage, type SerialState } from "./client/trust.js";
export { webTransport, webTransportFactory, type WebProtocol } from "./client/web.js";
