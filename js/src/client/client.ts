/**
 * `Client`: register, recover, change and delete a user's secret on a pakr cluster.
 *
 * The same operations, options and errors as the Python SDK's `pakr.Client`, each method
 * running one operation from `operations/` against the cluster a signed manifest describes.
 * Transports (one per node, reused across calls) come from a factory: in Node.js gRPC with
 * the pinned certificate, in a browser the nodes' web listeners; tests replace it.
 */
import { ConfigError } from "../core/errors.js";
import type { Manifest, ManifestNode, OperatorPin } from "../core/manifest.js";
import { DEFAULT_MAX_GUESSES, nodeRef, type NodeRef } from "../core/messages.js";
import { SYSTEM, type Randomness } from "../core/randomness.js";
import { checkTenantName } from "../core/tokens.js";
import { toHex } from "../core/bytes.js";
import { readAudit, type AuditPage } from "./audit.js";
import { ClusterContext, SILENT, type Logger, type PhaseObserver } from "./cluster.js";
import { Distrust } from "./distrust.js";
import { RetryPolicy } from "./fanout.js";
import { changePassword } from "./operations/change-password.js";
import { deleteUser } from "./operations/delete.js";
import { recoverOrMigrate } from "./operations/migrate.js";
import { register, type IfExists, type Registration } from "./operations/register.js";
import { status, type StatusReport } from "./operations/status.js";
import { checkSecret, checkUser, passwordBytes, type Password } from "./passwords.js";
import { TokenCache, type TokenProvider } from "./tokens.js";
import { loadTrustedManifest, type SerialState } from "./trust.js";
import type { NodeTransport } from "./transport.js";

/** Builds the transport for one manifest node. */
export type TransportFactory = (node: ManifestNode, manifest: Manifest) => NodeTransport;

/** What differs between Node.js and browsers: set by the package's entry point. */
export const platform: {
  transportFactory: TransportFactory | null;
  readSource: ((path: string) => Promise<unknown>) | null;
  serialStateAt: ((path: string) => SerialState) | null;
} = { transportFactory: null, readSource: null, serialStateAt: null };

export interface ClientOptions {
  readonly tenant: string;
  readonly tokenProvider: TokenProvider;
  /** Bounds each protocol step (seconds, per round of RPCs). */
  readonly deadline?: number;
  readonly retry?: RetryPolicy;
  readonly transportFactory?: TransportFactory;
  readonly rng?: Randomness;
  readonly onPhase?: PhaseObserver;
  /** Where warnings (nodes set aside, failed heals) go; silent by default. */
  readonly log?: Logger;
}

export interface FromManifestOptions extends ClientOptions {
  /** The cluster operator's public key (`ed25519:...`), or INSECURE_UNPINNED (dev only). */
  readonly operatorKey: OperatorPin | null;
  readonly minSerial?: number;
  /** Refuses rollbacks: a SerialState, or (Node.js) the path of a serial-state file. */
  readonly serialState?: SerialState | string | null;
}

/** A token provider that can mint other scopes (the dev provider): audit uses it. */
interface ScopedProvider {
  withScope(scope: string): TokenProvider;
}

function allNodes(manifest: Manifest): ManifestNode[] {
  return [...manifest.nodes, ...manifest.previousConfigurations.flatMap((set) => [...set.nodes])];
}

/** Serialises this client's state-changing operations on one user (a node keeps one open
 * recovery attempt per user: two side by side would replace each other's). */
class UserLocks {
  private readonly tails = new Map<string, Promise<void>>();

  async run<R>(key: string, body: () => Promise<R>): Promise<R> {
    const before = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = before.then(() => mine);
    this.tails.set(key, tail);
    await before;
    try {
      return await body();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

export class Client {
  private readonly ctx: ClusterContext;
  private readonly previous: readonly ClusterContext[];
  private readonly refs = new Map<string, NodeRef>();
  private readonly locks = new UserLocks();
  private closed = false;

  constructor(
    readonly manifest: Manifest,
    options: ClientOptions,
  ) {
    if (typeof options.tokenProvider !== "function") {
      throw new ConfigError("tokenProvider must be a function (userId, audience) => token");
    }
    const deadline = options.deadline ?? 5.0;
    if (!(deadline > 0)) throw new ConfigError("deadline must be a positive number of seconds");
    checkTenantName(options.tenant);
    const factory = options.transportFactory ?? platform.transportFactory;
    if (factory === null) throw new ConfigError("no transport for this platform: pass transportFactory");
    const ref = (node: ManifestNode): NodeRef => {
      const found = nodeRef(node.nodeId, node.index);
      this.refs.set(toHex(node.nodeId), found);
      return found;
    };
    const transports = new Map<NodeRef, NodeTransport>();
    for (const node of allNodes(manifest)) {
      const r = ref(node);
      if (!transports.has(r)) transports.set(r, factory(node, manifest));
    }
    this.ctx = new ClusterContext({
      tenant: options.tenant,
      nodes: manifest.nodes.map(ref),
      threshold: manifest.threshold,
      registerThreshold: manifest.registerThreshold,
      argon2: manifest.argon2,
      transports,
      tokenProvider: options.tokenProvider,
      deadline,
      retry: options.retry ?? new RetryPolicy(),
      rng: options.rng ?? SYSTEM,
      observer: options.onPhase ?? null,
      tokens: new TokenCache(),
      distrust: new Distrust(),
      log: options.log ?? SILENT,
    });
    this.previous = manifest.previousConfigurations.map((set) =>
      this.ctx.with({
        nodes: set.nodes.map(ref),
        threshold: set.threshold,
        registerThreshold: set.nodes.length,
      }),
    );
  }

  /**
   * A client for the cluster in the signed manifest `source` (a parsed JSON document, or in
   * Node.js a file path). `operatorKey` (required) pins the operator who must have signed
   * it; `minSerial` and `serialState` refuse rollbacks to an older manifest than one seen.
   */
  static async fromManifest(source: unknown, options: FromManifestOptions): Promise<Client> {
    let document = source;
    if (typeof source === "string") {
      if (platform.readSource === null) {
        throw new ConfigError("pass the manifest as a parsed JSON document (no files in a browser)");
      }
      document = await platform.readSource(source);
    }
    let serialState: SerialState | null = null;
    if (typeof options.serialState === "string") {
      if (platform.serialStateAt === null) {
        throw new ConfigError("serialState must be a SerialState here (serialStateFromStorage)");
      }
      serialState = platform.serialStateAt(options.serialState);
    } else if (options.serialState) {
      serialState = options.serialState;
    }
    const manifest = await loadTrustedManifest(document, {
      operatorKey: options.operatorKey,
      minSerial: options.minSerial ?? 0,
      serialState,
      ...(options.log ? { warn: (m: string) => options.log?.warn(m) } : {}),
    });
    return new Client(manifest, options);
  }

  /** The tenant (application) every user of this client belongs to. */
  get tenant(): string {
    return this.ctx.tenant;
  }

  /** The transport of one node (for diagnostics and tests). */
  transport(nodeId: Uint8Array): NodeTransport {
    const ref = this.refs.get(toHex(nodeId));
    const transport = ref && this.ctx.transports.get(ref);
    if (!transport) throw new ConfigError(`no node ${toHex(nodeId)} in the manifest`);
    return transport;
  }

  private checkOpen(): void {
    if (this.closed) throw new ConfigError("this client is closed; create a new one");
  }

  /**
   * Store `secret` (0..128 bytes) for `userId` under `password`. A registered user is
   * refused with AlreadyRegistered unless `ifExists: "replace"`; `maxGuesses` (1..100) wrong
   * guesses lock the secret out for good.
   */
  async register(
    userId: string,
    password: Password,
    secret: Uint8Array,
    options: { maxGuesses?: number; ifExists?: IfExists } = {},
  ): Promise<Registration> {
    this.checkOpen();
    const user = checkUser(this.tenant, userId);
    const pw = passwordBytes(password);
    const data = checkSecret(secret);
    return await this.locks.run(userId, () =>
      register(this.ctx, user, pw, data, options.maxGuesses ?? DEFAULT_MAX_GUESSES, options.ifExists ?? "refuse"),
    );
  }

  /**
   * The secret registered for `userId`, if `password` is right. Every call spends one guess
   * at each node it reaches (refunded on success). Throws InvalidPassword (with
   * `guessesRemaining`), LockedOut, NotRegistered, ClusterUnavailable, ProtocolError (a node
   * misbehaved; named), WeakParameters, InvalidAuth.
   */
  async recover(userId: string, password: Password): Promise<Uint8Array> {
    this.checkOpen();
    const user = checkUser(this.tenant, userId);
    const pw = passwordBytes(password);
    return await this.locks.run(userId, () => recoverOrMigrate(this.ctx, this.previous, user, pw));
  }

  /** Recover with `oldPassword` and re-register under `newPassword`; the old password stays
   * in force until the new registration is committed. Keeps the guess limit unless given. */
  async changePassword(
    userId: string,
    oldPassword: Password,
    newPassword: Password,
    options: { maxGuesses?: number } = {},
  ): Promise<void> {
    this.checkOpen();
    const user = checkUser(this.tenant, userId);
    const [oldPw, newPw] = [passwordBytes(oldPassword), passwordBytes(newPassword)];
    await this.locks.run(userId, () => changePassword(this.ctx, user, oldPw, newPw, options.maxGuesses ?? null));
  }

  /** Delete `userId`'s secret everywhere (tombstones); NotRegistered when there is none. */
  async delete(userId: string): Promise<void> {
    this.checkOpen();
    const user = checkUser(this.tenant, userId);
    await this.locks.run(userId, () => deleteUser(this.ctx, user));
  }

  /** Whether `userId` is registered and each node's guesses left (spends nothing). */
  async status(userId: string): Promise<StatusReport> {
    this.checkOpen();
    return await status(this.ctx, checkUser(this.tenant, userId));
  }

  /**
   * A page of the nodes' audit logs: the whole tenant's, or `userId`'s. Needs audit-scope
   * tokens: from `tokenProvider`, by default this client's dev provider in that scope.
   */
  async audit(
    userId: string | null = null,
    options: { cursor?: string | null; limit?: number; tokenProvider?: TokenProvider } = {},
  ): Promise<AuditPage> {
    this.checkOpen();
    if (userId !== null) checkUser(this.tenant, userId);
    let provider = options.tokenProvider;
    if (provider === undefined) {
      const scoped = this.ctx.tokenProvider as unknown as Partial<ScopedProvider>;
      if (typeof scoped.withScope !== "function") {
        throw new ConfigError(
          'audit needs audit-scope tokens: pass tokenProvider (a provider minting tokens with scope "audit")',
        );
      }
      provider = scoped.withScope("audit");
    }
    return await readAudit(this.ctx, provider, userId, options.cursor ?? null, options.limit ?? 100);
  }

  /** Close every node connection. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const transport of this.ctx.transports.values()) await transport.close();
  }

  toString(): string {
    const m = this.manifest;
    return `Client(cluster=${JSON.stringify(m.clusterId)}, tenant=${JSON.stringify(this.tenant)}, t=${m.threshold}, n=${m.nodes.length})`;
  }
}
