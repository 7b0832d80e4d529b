/**
 * Conversion between the protobuf messages of `node.proto` (generated into `src/gen/`) and the
 * protocol's messages, as the Python SDK's `pakr.proto.wire` does it.
 *
 * Decoding validates every field before anything else sees it: lengths, canonical scalars,
 * valid non-identity elements, integer ranges, UTF-8 and size limits. Every failure is a
 * {@link MalformedMessage} naming the field, so a malformed reply counts as that node
 * misbehaving. Functions sealing or opening HPKE fields are async.
 */
import { type DescMessage, type MessageShape, create, fromBinary } from "@bufbuild/protobuf";
import * as pb from "../gen/node_pb.js";
import { exact, utf8 } from "./bytes.js";
import { ErrorKind, MalformedMessage, NodeRefusal } from "./errors.js";
import { Element, Scalar } from "./group.js";
import { HpkePrivateKey, HpkePublicKey } from "./hpke.js";
import type { Argon2Params } from "./kdf.js";
import {
  ATTEMPT_ID_LEN,
  type AuditRow,
  type Delete,
  MAC_LEN,
  MAX_EPOCH,
  MAX_GUESSES_LIMIT,
  MAX_TENANT_BYTES,
  MAX_USER_ID_BYTES,
  NONCE_LEN,
  PROTOCOL_VERSION,
  REQUEST_ID_LEN,
  RESET_NONCE_LEN,
  type Recover2,
  type Recover2Reply,
  type Recover3,
  type Recover3Reply,
  type Register2,
  type Register3,
  type ResetGuesses,
  SIGNATURE_LEN,
  type UserRef,
  type UserStatus,
  VERIFYING_KEY_LEN,
  VERSION_LEN,
  type VersionInfo,
} from "./messages.js";
import { Proof } from "./oprf.js";
import { openRecover3Reply, openRegister2Shares, sealRecover3Reply, sealRegister2Shares } from "./sealed.js";

export const ERROR_METADATA_KEY = "pakr-error-bin";
export const MAX_MESSAGE_BYTES = 64 * 1024;
export const MAX_AUDIT_FIELD_BYTES = 256;

/** Parse serialized bytes into `schema`'s message; `MalformedMessage` on anything wrong. */
export function parse<Desc extends DescMessage>(schema: Desc, data: Uint8Array): MessageShape<Desc> {
  if (data.length > MAX_MESSAGE_BYTES) throw new MalformedMessage(`message is larger than ${MAX_MESSAGE_BYTES} bytes`);
  try {
    return fromBinary(schema, data);
  } catch {
    throw new MalformedMessage(`${schema.name} could not be parsed: not valid protobuf`);
  }
}

// ------------------------------------------------------------------------ field checks

function scalar(name: string, value: Uint8Array): Scalar {
  try {
    return Scalar.decode(exact(name, value, 32));
  } catch (error) {
    throw new MalformedMessage(`${name}: ${(error as Error).message}`);
  }
}

function element(name: string, value: Uint8Array): Element {
  try {
    return Element.decode(exact(name, value, 32));
  } catch (error) {
    throw new MalformedMessage(`${name}: ${(error as Error).message}`);
  }
}

function verifyingKey(name: string, value: Uint8Array): Uint8Array {
  // Any 32 bytes load as an Ed25519 public key in the Python SDK's library; a bad one simply
  // fails every signature check.
  return exact(name, value, VERIFYING_KEY_LEN);
}

function epochOf(name: string, value: bigint): bigint {
  if (value < 1n || value > MAX_EPOCH) throw new MalformedMessage(`${name} must be 1..2^64-1`);
  return value;
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function text(name: string, value: string, maxBytes: number, allowEmpty = false): string {
  let size: number;
  try {
    size = utf8(value, name).length;
  } catch {
    throw new MalformedMessage(`${name} is not valid UTF-8`);
  }
  if (size > maxBytes || (size === 0 && !allowEmpty)) {
    throw new MalformedMessage(`${name} must be ${allowEmpty ? 0 : 1}..${maxBytes} UTF-8 bytes, got ${size}`);
  }
  if (CONTROL.test(value)) throw new MalformedMessage(`${name} must not contain NUL or other control characters`);
  return value;
}

function maxGuessesOf(value: number): number {
  if (value < 1 || value > MAX_GUESSES_LIMIT) {
    throw new MalformedMessage(`max_guesses must be 1..${MAX_GUESSES_LIMIT}, got ${value}`);
  }
  return value;
}

/** Decode Argon2 parameters (a missing message reads as zeros and is refused). */
export function argon2FromPb(msg: pb.Argon2Params | undefined): Argon2Params {
  if (msg === undefined || msg.memoryKib === 0 || msg.iterations === 0 || msg.parallelism === 0) {
    throw new MalformedMessage("argon2 parameters must all be positive");
  }
  return Object.freeze({ memoryKib: msg.memoryKib, iterations: msg.iterations, parallelism: msg.parallelism });
}

export function argon2ToPb(params: Argon2Params): pb.Argon2Params {
  return create(pb.Argon2ParamsSchema, {
    memoryKib: params.memoryKib,
    iterations: params.iterations,
    parallelism: params.parallelism,
  });
}

// ------------------------------------------------------------------------ header

/** A validated request header. */
export interface Header {
  readonly requestId: Uint8Array;
  readonly user: UserRef;
}

/** Validate a request header (node side); an unknown protocol version is UPGRADE_REQUIRED. */
export function headerFromPb(msg: pb.RequestHeader | undefined, options: { allowEmptyUser?: boolean } = {}): Header {
  const header = msg ?? create(pb.RequestHeaderSchema);
  if (header.protocolVersion !== PROTOCOL_VERSION) {
    throw new NodeRefusal(
      ErrorKind.UPGRADE_REQUIRED,
      `this node speaks pakr protocol ${PROTOCOL_VERSION}, the request uses ${header.protocolVersion}; upgrade the older side`,
    );
  }
  return {
    requestId: exact("header.request_id", header.requestId, REQUEST_ID_LEN),
    user: {
      tenant: text("header.tenant", header.tenant, MAX_TENANT_BYTES),
      userId: text("header.user_id", header.userId, MAX_USER_ID_BYTES, options.allowEmptyUser ?? false),
    },
  };
}

export function headerToPb(requestId: Uint8Array, user: UserRef): pb.RequestHeader {
  return create(pb.RequestHeaderSchema, {
    protocolVersion: PROTOCOL_VERSION,
    requestId,
    tenant: user.tenant,
    userId: user.userId,
  });
}

// ------------------------------------------------------------------------ status

export function versionInfoFromPb(msg: pb.VersionInfo): VersionInfo {
  return Object.freeze({
    version: exact("version", msg.version, VERSION_LEN),
    epoch: epochOf("epoch", msg.epoch),
    argon2: argon2FromPb(msg.argon2),
    guessesRemaining: Math.min(msg.guessesRemaining, MAX_GUESSES_LIMIT),
    locked: msg.locked,
    maxGuesses: Math.min(msg.maxGuesses, MAX_GUESSES_LIMIT),
  });
}

export function versionInfoToPb(info: VersionInfo): pb.VersionInfo {
  return create(pb.VersionInfoSchema, {
    version: info.version,
    epoch: info.epoch,
    argon2: argon2ToPb(info.argon2),
    guessesRemaining: info.guessesRemaining,
    locked: info.locked,
    maxGuesses: info.maxGuesses,
  });
}

/** Decode a node's user status (Register1/Recover1 replies; a missing status is empty). */
export function statusFromPb(msg: pb.UserStatus | undefined): UserStatus {
  return Object.freeze({
    committed: msg?.committed ? versionInfoFromPb(msg.committed) : null,
    pending: msg?.pending ? versionInfoFromPb(msg.pending) : null,
    tombstoneEpoch: msg?.tombstoneEpoch ?? 0n,
    resetNonce: new Uint8Array(0),
  });
}

export function statusToPb(status: UserStatus): pb.UserStatus {
  return create(pb.UserStatusSchema, {
    tombstoneEpoch: status.tombstoneEpoch,
    committed: status.committed ? versionInfoToPb(status.committed) : undefined,
    pending: status.pending ? versionInfoToPb(status.pending) : undefined,
  });
}

/** A Recover1 reply: the status with the node's reset nonce (dropped when malformed). */
export function recover1StatusFromPb(msg: pb.Recover1Response): UserStatus {
  const status = statusFromPb(msg.status);
  const nonce = msg.resetNonce.length === RESET_NONCE_LEN ? msg.resetNonce : new Uint8Array(0);
  return Object.freeze({ ...status, resetNonce: nonce });
}

// ------------------------------------------------------------------------ register

/** Encode a Register2, sealing its share-bearing fields to the node's HPKE key. */
export async function register2ToPb(
  header: pb.RequestHeader,
  req: Register2,
  options: { nodeId: Uint8Array; nodeKey: HpkePublicKey },
): Promise<pb.Register2Request> {
  const user = { tenant: header.tenant, userId: header.userId };
  return create(pb.Register2RequestSchema, {
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
    sealedShares: await sealRegister2Shares(req, {
      user,
      nodeId: options.nodeId,
      version: req.version,
      epoch: req.epoch,
      nodeKey: options.nodeKey,
    }),
  });
}

/** Node side: decode a Register2, opening its `sealed_shares` with the node's HPKE key. */
export async function register2FromPb(
  msg: pb.Register2Request,
  options: { user: UserRef; nodeId: Uint8Array; nodeKey: HpkePrivateKey },
): Promise<Register2> {
  if (msg.maxGuesses < 1 || msg.maxGuesses > MAX_GUESSES_LIMIT) throw new MalformedMessage(`max_guesses must be 1..${MAX_GUESSES_LIMIT}`);
  if (msg.argon2 === undefined) throw new MalformedMessage("argon2 parameters are missing");
  const expected = msg.expected.length ? exact("expected", msg.expected, VERSION_LEN) : null;
  const version = exact("version", msg.version, VERSION_LEN);
  const epoch = epochOf("epoch", msg.epoch);
  const shares = await openRegister2Shares(msg.sealedShares, { ...options, version, epoch });
  return Object.freeze({
    version,
    epoch,
    expected,
    oprfKeyShare: shares.oprfKeyShare,
    oprfPublicShare: element("oprf_public_share", msg.oprfPublicShare),
    oprfKeySignature: exact("oprf_key_signature", msg.oprfKeySignature, SIGNATURE_LEN),
    verifyingKey: verifyingKey("verifying_key", msg.verifyingKey),
    commitment: exact("commitment", msg.commitment, MAC_LEN),
    unlockTag: shares.unlockTag,
    secretShare: shares.secretShare,
    encryptedSecret: shares.encryptedSecret,
    secretCommitment: exact("secret_commitment", msg.secretCommitment, MAC_LEN),
    maxGuesses: msg.maxGuesses,
    argon2: argon2FromPb(msg.argon2),
  });
}

export function register3ToPb(header: pb.RequestHeader, req: Register3): pb.Register3Request {
  return create(pb.Register3RequestSchema, { header, version: req.version });
}

export function register3FromPb(msg: pb.Register3Request): Register3 {
  return { version: exact("version", msg.version, VERSION_LEN) };
}

// ------------------------------------------------------------------------ recover

export function recover2FromPb(msg: pb.Recover2Request): Recover2 {
  return Object.freeze({
    version: exact("version", msg.version, VERSION_LEN),
    attemptId: exact("attempt_id", msg.attemptId, ATTEMPT_ID_LEN),
    blindedElement: element("blinded_element", msg.blindedElement),
  });
}

export function recover2ToPb(header: pb.RequestHeader, req: Recover2): pb.Recover2Request {
  return create(pb.Recover2RequestSchema, {
    header,
    version: req.version,
    attemptId: req.attemptId,
    blindedElement: req.blindedElement.encoded,
  });
}

/** Decode and validate a node's Recover2 reply (`MalformedMessage` naming the bad field). */
export function recover2ReplyFromPb(msg: pb.Recover2Response): Recover2Reply {
  return Object.freeze({
    evaluatedElement: element("evaluated_element", msg.evaluatedElement),
    proof: Proof.decode(exact("proof", msg.proof, 64)),
    oprfPublicShare: element("oprf_public_share", msg.oprfPublicShare),
    oprfKeySignature: exact("oprf_key_signature", msg.oprfKeySignature, SIGNATURE_LEN),
    verifyingKey: verifyingKey("verifying_key", msg.verifyingKey),
    commitment: exact("commitment", msg.commitment, MAC_LEN),
    guessesRemaining: Math.min(msg.guessesRemaining, MAX_GUESSES_LIMIT),
    nonce: exact("nonce", msg.nonce, NONCE_LEN),
    maxGuesses: maxGuessesOf(msg.maxGuesses),
  });
}

export function recover2ReplyToPb(reply: Recover2Reply): pb.Recover2Response {
  return create(pb.Recover2ResponseSchema, {
    evaluatedElement: reply.evaluatedElement.encoded,
    proof: reply.proof.encode(),
    oprfPublicShare: reply.oprfPublicShare.encoded,
    oprfKeySignature: reply.oprfKeySignature,
    verifyingKey: reply.verifyingKey,
    commitment: reply.commitment,
    guessesRemaining: reply.guessesRemaining,
    nonce: reply.nonce,
    maxGuesses: reply.maxGuesses,
  });
}

export function recover3FromPb(msg: pb.Recover3Request): Recover3 {
  const replyKey = HpkePublicKey.decode(msg.replyKey, "reply_key");
  return Object.freeze({
    version: exact("version", msg.version, VERSION_LEN),
    attemptId: exact("attempt_id", msg.attemptId, ATTEMPT_ID_LEN),
    unlockProof: exact("unlock_proof", msg.unlockProof, MAC_LEN),
    replyKey: replyKey.encoded,
    replySeed: null,
  });
}

export function recover3ToPb(header: pb.RequestHeader, req: Recover3): pb.Recover3Request {
  return create(pb.Recover3RequestSchema, {
    header,
    version: req.version,
    attemptId: req.attemptId,
    unlockProof: req.unlockProof,
    replyKey: req.replyKey,
  });
}

/** Open a Recover3 reply with the private half of the request's reply key. */
export async function recover3ReplyFromPb(
  msg: pb.Recover3Response,
  options: { user: UserRef; nodeId: Uint8Array; request: Recover3 },
): Promise<Recover3Reply> {
  const { request } = options;
  if (request.replySeed === null) throw new RangeError("the Recover3 request carries no reply key seed (client side only)");
  return openRecover3Reply(msg.sealedShare, {
    user: options.user,
    nodeId: options.nodeId,
    version: request.version,
    attemptId: request.attemptId,
    replyKey: await HpkePrivateKey.fromSeed(request.replySeed),
  });
}

/** Node side: seal a Recover3 reply to the key the request carries. */
export async function recover3ReplyToPb(
  reply: Recover3Reply,
  options: { user: UserRef; nodeId: Uint8Array; request: Recover3 },
): Promise<pb.Recover3Response> {
  const { request } = options;
  return create(pb.Recover3ResponseSchema, {
    sealedShare: await sealRecover3Reply(reply, {
      user: options.user,
      nodeId: options.nodeId,
      version: request.version,
      attemptId: request.attemptId,
      replyKey: HpkePublicKey.decode(request.replyKey, "reply_key"),
    }),
  });
}

// ------------------------------------------------------------------------ reset, delete

export function resetFromPb(msg: pb.ResetGuessesRequest): ResetGuesses {
  return Object.freeze({
    version: exact("version", msg.version, VERSION_LEN),
    nonce: exact("nonce", msg.nonce, RESET_NONCE_LEN),
    proof: exact("proof", msg.proof, MAC_LEN),
  });
}

export function resetToPb(header: pb.RequestHeader, req: ResetGuesses): pb.ResetGuessesRequest {
  return create(pb.ResetGuessesRequestSchema, { header, version: req.version, nonce: req.nonce, proof: req.proof });
}

export function deleteFromPb(msg: pb.DeleteRequest): Delete {
  return { epoch: epochOf("epoch", msg.epoch) };
}

export function deleteToPb(header: pb.RequestHeader, req: Delete): pb.DeleteRequest {
  return create(pb.DeleteRequestSchema, { header, epoch: req.epoch });
}

// ------------------------------------------------------------------------ errors

export function errorDetailToPb(error: NodeRefusal): pb.ErrorDetail {
  return create(pb.ErrorDetailSchema, {
    kind: error.kind as number as pb.ErrorKind,
    message: error.message,
    hasGuessesRemaining: error.guessesRemaining !== null,
    guessesRemaining: error.guessesRemaining ?? 0,
    retryAfterSeconds: error.retryAfter ?? 0,
  });
}

/** Decode the `pakr-error-bin` trailer (or Connect error detail) into a {@link NodeRefusal}. */
export function errorDetailFromBytes(data: Uint8Array): NodeRefusal {
  return errorDetailFromPb(parse(pb.ErrorDetailSchema, data));
}

/** A decoded ErrorDetail as a {@link NodeRefusal} (unknown kinds read as UNSPECIFIED). */
export function errorDetailFromPb(detail: pb.ErrorDetail): NodeRefusal {
  const kind = detail.kind in ErrorKind && Number.isInteger(detail.kind) ? (detail.kind as number as ErrorKind) : ErrorKind.UNSPECIFIED;
  return new NodeRefusal(kind, detail.message.slice(0, 500), {
    guessesRemaining: detail.hasGuessesRemaining ? detail.guessesRemaining : null,
    retryAfter: detail.retryAfterSeconds || null,
  });
}

// ------------------------------------------------------------------------ audit

/** A ReadAudit reply's rows, checked: ids grow, text fields are bounded. */
export function auditRowsFromPb(msg: pb.ReadAuditResponse): AuditRow[] {
  const rows: AuditRow[] = [];
  let last = 0n;
  for (const entry of msg.entries) {
    if (entry.id <= last) throw new MalformedMessage("audit entries must come in increasing id order");
    last = entry.id;
    rows.push(
      Object.freeze({
        id: entry.id,
        time: entry.time,
        tenant: text("audit.tenant", entry.tenant, MAX_AUDIT_FIELD_BYTES),
        userId: text("audit.user_id", entry.userId, MAX_AUDIT_FIELD_BYTES),
        op: text("audit.op", entry.op, MAX_AUDIT_FIELD_BYTES),
        outcome: text("audit.outcome", entry.outcome, MAX_AUDIT_FIELD_BYTES, true),
        peer: text("audit.peer", entry.peer, MAX_AUDIT_FIELD_BYTES, true),
      }),
    );
  }
  return rows;
}
