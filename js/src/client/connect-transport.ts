/**
 * A node's RPCs over a connect-es `Transport`: gRPC over HTTP/2 in Node.js (`node.ts`, TLS
 * pinned to the manifest's certificate) or the node's web listener in a browser (`web.ts`).
 *
 * Only this module knows protobuf, metadata and status codes. Every call carries its own
 * deadline (`timeoutMs`) and the fan-out's cancellation signal. A refusal is read from the
 * `pakr-error-bin` trailer (the SDK relies on the typed kind, never on the status code);
 * without it the status code only tells reachable from not.
 */
import { Code, ConnectError, createClient, decodeBinaryHeader, type Client, type Transport } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ErrorKind, MalformedMessage, NodeRefusal, NodeUnreachable, PakrError } from "../core/errors.js";
import type { HpkePublicKey } from "../core/hpke.js";
import {
  REQUEST_ID_LEN,
  type AuditRow,
  type Delete,
  type NodeRef,
  type Recover2,
  type Recover2Reply,
  type Recover3,
  type Recover3Reply,
  type Register2,
  type Register3,
  type ResetGuesses,
  type UserRef,
  type UserStatus,
} from "../core/messages.js";
import * as wire from "../core/wire.js";
import {
  DeleteRequestSchema,
  Node,
  ReadAuditRequestSchema,
  Recover1RequestSchema,
  Register1RequestSchema,
  Register3RequestSchema,
} from "../gen/node_pb.js";
import { ConfigError } from "../core/errors.js";
import type { CallOptions, NodeTransport } from "./transport.js";

// Status codes that mean "no answer yet, maybe later" (retried where allowed).
const TRANSIENT = new Set<Code>([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Canceled,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.Unknown,
]);

/** A node's error as a typed NodeRefusal or NodeUnreachable. */
export function refusalFromError(error: unknown): PakrError {
  if (error instanceof PakrError) return error;
  const err = ConnectError.from(error);
  const raw = err.metadata.get(wire.ERROR_METADATA_KEY);
  if (raw !== null) {
    try {
      return wire.errorDetailFromBytes(decodeBinaryHeader(raw.split(",")[0]!.trim()));
    } catch (decodeError) {
      if (!(decodeError instanceof PakrError) && !(decodeError instanceof Error)) throw decodeError;
    }
  }
  const name = (Code[err.code] ?? "error").replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase());
  const details = err.rawMessage.trim().slice(0, 200);
  if (err.code === Code.Unimplemented) {
    return new NodeRefusal(ErrorKind.UPGRADE_REQUIRED, "the node does not implement this RPC");
  }
  return new NodeUnreachable(details ? `${name}: ${details}` : name, { transient: TRANSIENT.has(err.code) });
}

function randomBytes(length: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(length));
}

/** Builds the connect-es transport; called again after the node was unreachable, so a
 * fresh connection is tried at once instead of an old one's reconnect backoff. */
export type TransportMaker = () => Transport | Promise<Transport>;

export class ConnectNodeTransport implements NodeTransport {
  private client: Client<typeof Node> | null = null;
  private making: Promise<Client<typeof Node>> | null = null;
  private reconnect = false;

  constructor(
    readonly node: NodeRef,
    private readonly make: TransportMaker,
    private readonly hpkePublicKey: HpkePublicKey | null,
    private readonly where: string,
  ) {}

  toString(): string {
    return `ConnectNodeTransport(${this.node.name}, ${this.where})`;
  }

  private async getClient(): Promise<Client<typeof Node>> {
    if (this.client !== null && !this.reconnect) return this.client;
    if (this.reconnect) {
      this.reconnect = false;
      this.client = null;
      this.making = null;
    }
    this.making ??= (async () => createClient(Node, await this.make()))();
    try {
      this.client = await this.making;
    } catch (error) {
      this.making = null;
      throw error instanceof PakrError ? error : new NodeUnreachable(String(error));
    }
    return this.client;
  }

  private async call<R>(
    token: string,
    options: CallOptions,
    invoke: (client: Client<typeof Node>, callOptions: object) => Promise<R>,
  ): Promise<R> {
    const client = await this.getClient();
    const callOptions = {
      headers: { authorization: `Bearer ${token}` },
      timeoutMs: Math.max(1, Math.ceil(options.timeout * 1000)),
      signal: options.signal,
    };
    try {
      return await invoke(client, callOptions);
    } catch (error) {
      const mapped = refusalFromError(error);
      if (mapped instanceof NodeUnreachable && ConnectError.from(error).code === Code.Unavailable) {
        this.reconnect = true;
      }
      throw mapped;
    }
  }

  private header(user: UserRef) {
    return wire.headerToPb(randomBytes(REQUEST_ID_LEN), user);
  }

  async register1(user: UserRef, token: string, options: CallOptions): Promise<UserStatus> {
    const msg = create(Register1RequestSchema, { header: this.header(user) });
    const reply = await this.call(token, options, (c, o) => c.register1(msg, o));
    return wire.statusFromPb(reply.status);
  }

  async register2(user: UserRef, token: string, request: Register2, options: CallOptions): Promise<void> {
    if (this.hpkePublicKey === null) {
      throw new ConfigError(
        `the manifest lists no HPKE key for ${this.node.name}: only nodes of the current` +
          " configuration take registrations",
      );
    }
    const msg = await wire.register2ToPb(this.header(user), request, {
      nodeId: this.node.nodeId,
      nodeKey: this.hpkePublicKey,
    });
    await this.call(token, options, (c, o) => c.register2(msg, o));
  }

  async register3(user: UserRef, token: string, request: Register3, options: CallOptions): Promise<void> {
    const msg = create(Register3RequestSchema, { header: this.header(user), version: request.version });
    await this.call(token, options, (c, o) => c.register3(msg, o));
  }

  async recover1(user: UserRef, token: string, options: CallOptions): Promise<UserStatus> {
    const msg = create(Recover1RequestSchema, { header: this.header(user) });
    const reply = await this.call(token, options, (c, o) => c.recover1(msg, o));
    return wire.recover1StatusFromPb(reply);
  }

  async recover2(user: UserRef, token: string, request: Recover2, options: CallOptions): Promise<Recover2Reply> {
    const msg = wire.recover2ToPb(this.header(user), request);
    const reply = await this.call(token, options, (c, o) => c.recover2(msg, o));
    return wire.recover2ReplyFromPb(reply);
  }

  async recover3(user: UserRef, token: string, request: Recover3, options: CallOptions): Promise<Recover3Reply> {
    const msg = wire.recover3ToPb(this.header(user), request);
    const reply = await this.call(token, options, (c, o) => c.recover3(msg, o));
    return await wire.recover3ReplyFromPb(reply, { user, nodeId: this.node.nodeId, request });
  }

  async resetGuesses(user: UserRef, token: string, request: ResetGuesses, options: CallOptions): Promise<void> {
    const msg = wire.resetToPb(this.header(user), request);
    await this.call(token, options, (c, o) => c.resetGuesses(msg, o));
  }

  async delete(user: UserRef, token: string, request: Delete, options: CallOptions): Promise<void> {
    const msg = create(DeleteRequestSchema, { header: this.header(user), epoch: BigInt(request.epoch) });
    await this.call(token, options, (c, o) => c.delete(msg, o));
  }

  async readAudit(
    user: UserRef,
    token: string,
    page: { afterId: number; limit: number },
    options: CallOptions,
  ): Promise<readonly AuditRow[]> {
    const msg = create(ReadAuditRequestSchema, {
      header: this.header(user),
      afterId: BigInt(page.afterId),
      limit: page.limit,
    });
    const reply = await this.call(token, options, (c, o) => c.readAudit(msg, o));
    return wire.auditRowsFromPb(reply);
  }

  async close(): Promise<void> {
    this.client = null;
    this.making = null;
  }
}

export { MalformedMessage };
