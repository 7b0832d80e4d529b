/**
 * Conversion between the protobuf messages of `node.proto` (generated stubs in `gen/`) and the
 * protocol values of `messages.ts`: the client's half of the Python `pakr.proto.wire`.
 *
 * Decoding validates every field before anything else sees it: lengths, canonical scalars,
 * valid non-identity elements, integer ranges. Every failure is a `MalformedMessage` naming the
 * field, which the SDK treats as that node misbehaving.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import {
  Argon2ParamsSchema,
  ErrorDetailSchema,
  Recover2RequestSchema,
  Recover3RequestSchema,
  Register2RequestSchema,
  RequestHeaderSchema,
  ResetGuessesRequestSchema,
  type Argon2Params as PbArgon2Params,
  type ReadAuditResponse,
  type Recover1Response,
  type Recover2Request,
  type Recover2Response,
  type Recover3Request,
  type Recover3Response,
  type Register2Request,
  type RequestHeader,
  type ResetGuessesRequest,
  type UserStatus as PbUserStatus,
  type VersionInfo as PbVersionInfo,
} from "../gen/node_pb.js";
import { ErrorKind, MalformedMessage, NodeRefusal } from "./errors.js";
import { Element } from "./group.js";
import { HpkePrivateKey, type HpkePublicKey } from "./hpke.js";
import type { Argon2Params } from "./kdf.js";
import {
  MAC_LEN,
  MAX_EPOCH,
  MAX_GUESSES_LIMIT,
  NONCE_LEN,
  PROTOCOL_VERSION,
  RESET_NONCE_LEN,
  SIGNATURE_LEN,
  VERIFYING_KEY_LEN,
  VERSION_LEN,
  type AuditRow,
  type Recover2,
  type Recover2Reply,
  type Recover3,
  type Recover3Reply,
  type Register2,
  type ResetGuesses,
  type UserRef,
  type UserStatus,
  type VersionInfo,
} from "./messages.js";
import { Proof } from "./oprf.js";
import { openRecover3Reply, sealRegister2Shares } from "./sealed.js";

export const ERROR_METADATA_KEY = "pakr-error-bin";
export const MAX_MESSAGE_BYTES = 64 * 1024;
export const MAX_AUDIT_FIELD_BYTES = 256;

const utf8 = new TextEncoder();

function exact(name: string, value: Uint8Array, length: number): Uint8Array {
  if (value.length !== length) throw new MalformedMessage(`${name} must be ${length} bytes, got ${value.length}`);
  return Uint8Array.from(value);
}

function element(name: string, value: Uint8Array): Element {
  try {
    return Element.decode(exact(name, value, 32));
  } catch (error) {
    throw new MalformedMessage(`${name}: ${(error as Error).message}`);
  }
}

function epoch(name: string, value: bigint): bigint {
  if (value < 1n || value > MAX_EPOCH) throw new MalformedMessage(`${name} must be 1..2^64-1`);
  return value;
}

function text(name: string, value: string, maxBytes: number, allowEmpty = false): string {
  const size = utf8.encode(value).length;
  if (size > maxBytes || (size === 0 && !allowEmpty)) {
    throw new MalformedMessage(`${name} must be ${allowEmpty ? 0 : 1}..${maxBytes} UTF-8 bytes, got ${size}`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(value)) {
    throw new MalformedMessage(`${name} must not contain NUL or other control characters`);
  }
  return value;
}

/** Decode Argon2 parameters; bounds are the client's policy (`checkArgon2`). */
export function argon2FromPb(msg: PbArgon2Params | undefined): Argon2Params {
  if (msg === undefined || msg.memoryKib === 0 || msg.iterations === 0 || msg.parallelism === 0) {
    throw new MalformedMessage("argon2 parameters must all be positive");
  }
  return { memoryKib: msg.memoryKib, iterations: msg.iterations, parallelism: msg.parallelism };
}

export function argon2ToPb(params: Argon2Params): PbArgon2Params {
  return create(Argon2ParamsSchema, params);
}

export function headerToPb(requestId: Uint8Array, user: UserRef): RequestHeader {
  return create(RequestHeaderSchema, {
    protocolVersion: PROTOCOL_VERSION,
    requestId,
    tenant: user.tenant,
    userId: user.userId,
  });
}

export function versionInfoFromPb(msg: PbVersionInfo): VersionInfo {
  return {
    version: exact("version", msg.version, VERSION_LEN),
    epoch: epoch("epoch", msg.epoch),
    argon2: argon2FromPb(msg.argon2),
    guessesRemaining: Math.min(msg.guessesRemaining, MAX_GUESSES_LIMIT),
    locked: msg.locked,
    maxGuesses: Math.min(msg.maxGuesses, MAX_GUESSES_LIMIT),
  };
}

/** Decode a node's user status (Register1/Recover1 replies). */
export function statusFromPb(msg: PbUserStatus | undefined): UserStatus {
  return {
    committed: msg?.committed ? versionInfoFromPb(msg.committed) : null,
    pending: msg?.pending ? versionInfoFromPb(msg.pending) : null,
    tombstoneEpoch: msg?.tombstoneEpoch ?? 0n,
    resetNonce: new Uint8Array(0),
  };
}

/** A Recover1 reply: the status with the node's reset nonce (dropped when malformed: the
 * node then simply gets no reset). */
export function recover1StatusFromPb(msg: Recover1Response): UserStatus {
  const status = statusFromPb(msg.status);
  const nonce = msg.resetNonce.length === RESET_NONCE_LEN ? Uint8Array.from(msg.resetNonce) : new Uint8Array(0);
  return { ...status, resetNonce: nonce };
}

/** Encode a Register2, sealing its share-bearing fields to the node's HPKE key. */
export async function register2ToPb(
  header: RequestHeader,
  req: Register2,
  context: { nodeId: Uint8Array; nodeKey: HpkePublicKey },
): Promise<Register2Request> {
  const user = { tenant: header.tenant, userId: header.userId };
  const sealedShares = await sealRegister2Shares(
    {
      oprfKeyShare: req.oprfKeyShare,
      secretShare: req.secretShare,
      unlockTag: req.unlockTag,
      encryptedSecret: req.encryptedSecret,
    },
    { user, nodeId: context.nodeId, version: req.version, epoch: req.epoch, nodeKey: context.nodeKey },
  );
  return create(Register2RequestSchema, {
    header,
    version: req.version,
    epoch: req.epoch,
    expected: req.expected ?? new Uint8Array(0),
    oprfPublicShare: req.oprfPublicShare.encoded,
    oprfKeySignature: req.oprfKeySignature,
    verifyingKey: req.verifyingKey,
    commitment: req.commitment,
    secretCommitment: req.secretCommitment,
    maxGuesses: req.maxGuesses,
    argon2: argon2ToPb(req.argon2),
    sealedShares,
  });
}

export function recover2ToPb(header: RequestHeader, req: Recover2): Recover2Request {
  return create(Recover2RequestSchema, {
    header,
    version: req.version,
    attemptId: req.attemptId,
    blindedElement: req.blindedElement.encoded,
  });
}

export function recover2ReplyFromPb(msg: Recover2Response): Recover2Reply {
  if (msg.maxGuesses < 1 || msg.maxGuesses > MAX_GUESSES_LIMIT) {
    throw new MalformedMessage(`max_guesses must be 1..${MAX_GUESSES_LIMIT}, got ${msg.maxGuesses}`);
  }
  let proof: Proof;
  try {
    proof = Proof.decode(exact("proof", msg.proof, 64));
  } catch (error) {
    throw new MalformedMessage(`proof: ${(error as Error).message}`);
  }
  const verifyingKey = exact("verifying_key", msg.verifyingKey, VERIFYING_KEY_LEN);
  return {
    evaluatedElement: element("evaluated_element", msg.evaluatedElement),
    proof,
    oprfPublicShare: element("oprf_public_share", msg.oprfPublicShare),
    oprfKeySignature: exact("oprf_key_signature", msg.oprfKeySignature, SIGNATURE_LEN),
    verifyingKey,
    commitment: exact("commitment", msg.commitment, MAC_LEN),
    guessesRemaining: Math.min(msg.guessesRemaining, MAX_GUESSES_LIMIT),
    nonce: exact("nonce", msg.nonce, NONCE_LEN),
    maxGuesses: msg.maxGuesses,
  };
}

export function recover3ToPb(header: RequestHeader, req: Recover3): Recover3Request {
  return create(Recover3RequestSchema, {
    header,
    version: req.version,
    attemptId: req.attemptId,
    unlockProof: req.unlockProof,
    replyKey: req.replyKey,
  });
}

/** Open a Recover3 reply with the private half of the request's reply key. */
export async function recover3ReplyFromPb(
  msg: Recover3Response,
  context: { user: UserRef; nodeId: Uint8Array; request: Recover3 },
): Promise<Recover3Reply> {
  const seed = context.request.replySeed;
  if (seed === null) throw new Error("the Recover3 request carries no reply key seed (client side only)");
  return await openRecover3Reply(msg.sealedShare, {
    user: context.user,
    nodeId: context.nodeId,
    version: context.request.version,
    attemptId: context.request.attemptId,
    replyKey: await HpkePrivateKey.fromSeed(seed),
  });
}

export function resetToPb(header: RequestHeader, req: ResetGuesses): ResetGuessesRequest {
  return create(ResetGuessesRequestSchema, { header, version: req.version, nonce: req.nonce, proof: req.proof });
}

/** Decode the `pakr-error-bin` trailer into a NodeRefusal. */
export function errorDetailFromBytes(data: Uint8Array): NodeRefusal {
  if (data.length > MAX_MESSAGE_BYTES) throw new MalformedMessage(`message is larger than ${MAX_MESSAGE_BYTES} bytes`);
  let detail;
  try {
    detail = fromBinary(ErrorDetailSchema, data);
  } catch {
    throw new MalformedMessage("ErrorDetail could not be parsed: not valid protobuf");
  }
  const kind = detail.kind in ErrorKind ? (detail.kind as number as ErrorKind) : ErrorKind.UNSPECIFIED;
  return new NodeRefusal(kind, detail.message.slice(0, 500), {
    guessesRemaining: detail.hasGuessesRemaining ? detail.guessesRemaining : null,
    retryAfter: detail.retryAfterSeconds || null,
  });
}

/** A ReadAudit reply's rows, checked: ids grow, text fields are bounded. */
export function auditRowsFromPb(msg: ReadAuditResponse): AuditRow[] {
  const rows: AuditRow[] = [];
  let last = 0n;
  for (const entry of msg.entries) {
    if (entry.id <= last) throw new MalformedMessage("audit entries must come in increasing id order");
    last = entry.id;
    rows.push({
      id: entry.id,
      time: entry.time,
      tenant: text("audit.tenant", entry.tenant, MAX_AUDIT_FIELD_BYTES),
      userId: text("audit.user_id", entry.userId, MAX_AUDIT_FIELD_BYTES),
      op: text("audit.op", entry.op, MAX_AUDIT_FIELD_BYTES),
      outcome: text("audit.outcome", entry.outcome, MAX_AUDIT_FIELD_BYTES, true),
      peer: text("audit.peer", entry.peer, MAX_AUDIT_FIELD_BYTES, true),
    });
  }
  return rows;
}
