/**
 * The HPKE-sealed fields of the wire: what each holds, byte for byte, and for whom.
 *
 * Register2 carries `sealed_shares`: `k_i || s_i || unlock_tag_i || encrypted_secret`
 * (32 + 32 + 32 + 145) sealed to the node's HPKE key from the signed manifest. Recover3's reply
 * carries `sealed_share`: `s_i || encrypted_secret || secret_commitment_i` (32 + 145 + 32)
 * sealed to the fresh key the client sent in its Recover3 request.
 */
import { concat } from "./bytes.js";
import { MalformedMessage } from "./errors.js";
import { Scalar } from "./group.js";
import { type HpkePrivateKey, type HpkePublicKey, recover3Info, register2Info } from "./hpke.js";
import { MAC_LEN, type Recover3Reply, type UserRef } from "./messages.js";
import { CIPHERTEXT_LEN } from "./seal.js";

const SCALAR_LEN = 32;
export const REGISTER2_PLAINTEXT_LEN = 2 * SCALAR_LEN + MAC_LEN + CIPHERTEXT_LEN; // 241
export const RECOVER3_PLAINTEXT_LEN = SCALAR_LEN + CIPHERTEXT_LEN + MAC_LEN; // 209

/** The share-bearing fields of one Register2. */
export interface Register2Shares {
  readonly oprfKeyShare: Scalar;
  readonly secretShare: Scalar;
  readonly unlockTag: Uint8Array;
  readonly encryptedSecret: Uint8Array;
}

interface Register2Context {
  readonly user: UserRef;
  readonly nodeId: Uint8Array;
  readonly version: Uint8Array;
  readonly epoch: bigint;
}

interface Recover3Context {
  readonly user: UserRef;
  readonly nodeId: Uint8Array;
  readonly version: Uint8Array;
  readonly attemptId: Uint8Array;
}

function length(name: string, plaintext: Uint8Array, expected: number): void {
  if (plaintext.length !== expected) throw new MalformedMessage(`${name} holds ${plaintext.length} bytes, not ${expected}`);
}

function scalar(name: string, value: Uint8Array): Scalar {
  try {
    return Scalar.decode(value);
  } catch (error) {
    throw new MalformedMessage(`${name}: ${(error as Error).message}`);
  }
}

/** `sealed_shares` for one node's Register2. */
export async function sealRegister2Shares(
  shares: Register2Shares,
  context: Register2Context & { readonly nodeKey: HpkePublicKey },
): Promise<Uint8Array> {
  const plaintext = concat(shares.oprfKeyShare.encoded, shares.secretShare.encoded, shares.unlockTag, shares.encryptedSecret);
  length("sealed_shares", plaintext, REGISTER2_PLAINTEXT_LEN);
  return context.nodeKey.seal(plaintext, register2Info(context.user, context.nodeId, context.version, context.epoch));
}

/** The node's side: open `sealed_shares` (tests and tools; the SDK never needs it). */
export async function openRegister2Shares(
  sealed: Uint8Array,
  context: Register2Context & { readonly nodeKey: HpkePrivateKey },
): Promise<Register2Shares> {
  const plaintext = await context.nodeKey.open(
    sealed,
    register2Info(context.user, context.nodeId, context.version, context.epoch),
    "sealed_shares",
  );
  length("sealed_shares", plaintext, REGISTER2_PLAINTEXT_LEN);
  return {
    oprfKeyShare: scalar("oprf_key_share", plaintext.subarray(0, 32)),
    secretShare: scalar("secret_share", plaintext.subarray(32, 64)),
    unlockTag: plaintext.slice(64, 96),
    encryptedSecret: plaintext.slice(96),
  };
}

/** The node's side: `sealed_share` of a Recover3 reply, to the client's fresh key. */
export async function sealRecover3Reply(
  reply: Recover3Reply,
  context: Recover3Context & { readonly replyKey: HpkePublicKey },
): Promise<Uint8Array> {
  const plaintext = concat(reply.secretShare.encoded, reply.encryptedSecret, reply.secretCommitment);
  length("sealed_share", plaintext, RECOVER3_PLAINTEXT_LEN);
  return context.replyKey.seal(plaintext, recover3Info(context.user, context.nodeId, context.version, context.attemptId));
}

/** The client opens `sealed_share`; `MalformedMessage` if it does not open or parse. */
export async function openRecover3Reply(
  sealed: Uint8Array,
  context: Recover3Context & { readonly replyKey: HpkePrivateKey },
): Promise<Recover3Reply> {
  const plaintext = await context.replyKey.open(
    sealed,
    recover3Info(context.user, context.nodeId, context.version, context.attemptId),
    "sealed_share",
  );
  length("sealed_share", plaintext, RECOVER3_PLAINTEXT_LEN);
  return {
    secretShare: scalar("secret_share", plaintext.subarray(0, 32)),
    encryptedSecret: plaintext.slice(32, 32 + CIPHERTEXT_LEN),
    secretCommitment: plaintext.slice(32 + CIPHERTEXT_LEN),
  };
}
