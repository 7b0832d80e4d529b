/**
 * Registration (docs/protocol.md §3), client side, one function per step:
 * {@link registrationEpoch} (after Register1) → {@link newVersion} and Argon2id
 * (`kdf.stretchPassword`) → {@link prepareRegistration} (the per-node Register2 requests) →
 * Register3 to the nodes that acknowledged. The old committed version stays in force until the
 * new one is committed, so an interrupted password change never strands the secret.
 *
 * Maps keyed by node id use the id's lowercase hex (`toHex(node.nodeId)`).
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { toHex } from "./bytes.js";
import { ConfigError } from "./errors.js";
import { Element } from "./group.js";
import * as kdf from "./kdf.js";
import {
  DEFAULT_MAX_GUESSES,
  MAX_EPOCH,
  MAX_GUESSES_LIMIT,
  type NodeRef,
  type Register2,
  type UserRef,
  type UserStatus,
  VERSION_LEN,
  highestEpoch,
} from "./messages.js";
import * as oprf from "./oprf.js";
import { type VersionPolicy, signOprfKey } from "./policy.js";
import { type Randomness, SYSTEM } from "./randomness.js";
import * as seal from "./seal.js";
import * as shamir from "./shamir.js";

/**
 * How far past the epochs already held a new epoch may go: nodes refuse larger jumps, and the
 * client never adopts an epoch reported beyond this bound above what enough other nodes report.
 */
export const EPOCH_JUMP_LIMIT = 2n ** 20n;

/**
 * Register1 → the new registration's epoch: 1 + the highest epoch reported by a node that is
 * corroborated (at most {@link EPOCH_JUMP_LIMIT} above the `tolerate + 1`-th highest report;
 * the client passes max(1, n - t)).
 */
export function registrationEpoch(statuses: Iterable<UserStatus>, options: { tolerate?: number } = {}): bigint {
  const tolerate = options.tolerate ?? 1;
  const reported = [...statuses].map(highestEpoch).sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
  const reference = reported.length > tolerate ? (reported[tolerate] as bigint) : 0n;
  const bound = reference + EPOCH_JUMP_LIMIT;
  let highest = 0n;
  for (const epoch of reported) if (epoch <= bound && epoch > highest) highest = epoch;
  if (highest >= MAX_EPOCH) throw new ConfigError("epoch space exhausted for this user; delete is impossible too");
  return highest + 1n;
}

/** A fresh random 16-byte version id (the Argon2 salt and the AEAD key depend on it). */
export function newVersion(rng: Randomness = SYSTEM): Uint8Array {
  return rng.bytes(VERSION_LEN);
}

/** Reject arguments the nodes would refuse, before any work or traffic. */
export function checkRegistrationArgs(secret: Uint8Array, maxGuesses: number): void {
  if (secret.length > seal.MAX_SECRET_LEN) {
    throw new ConfigError(
      `secret is ${secret.length} bytes; pakr stores at most ${seal.MAX_SECRET_LEN} (store a key here and encrypt larger data with it)`,
    );
  }
  if (!Number.isInteger(maxGuesses) || maxGuesses < 1 || maxGuesses > MAX_GUESSES_LIMIT) {
    throw new ConfigError(`max_guesses must be 1..${MAX_GUESSES_LIMIT}, got ${maxGuesses}`);
  }
}

/** The Register2 request for every node of the configuration, keyed by hex node id. */
export interface RegistrationPlan {
  readonly version: Uint8Array;
  readonly epoch: bigint;
  readonly requests: ReadonlyMap<string, Register2>;
}

/**
 * Step 2 of §3: share a fresh OPRF key and encryption scalar, build each Register2.
 * `accessKey` and `encryptionKeySeed` are the halves of Argon2id(password); the root OPRF key
 * k, the scalar s and the one-time signing key never leave this function. Random values are
 * drawn in the order the vectors list: k, k's coefficients, the Ed25519 seed, s, s's coefficients.
 */
export function prepareRegistration(args: {
  readonly user: UserRef;
  readonly nodes: readonly NodeRef[];
  readonly threshold: number;
  readonly version: Uint8Array;
  readonly epoch: bigint;
  /** Each node's committed version at Register1 (hex node id → version, or null for none). */
  readonly expected: ReadonlyMap<string, Uint8Array | null>;
  readonly accessKey: Uint8Array;
  readonly encryptionKeySeed: Uint8Array;
  readonly secret: Uint8Array;
  readonly argon2: kdf.Argon2Params;
  readonly maxGuesses?: number;
  readonly rng?: Randomness;
}): RegistrationPlan {
  const maxGuesses = args.maxGuesses ?? DEFAULT_MAX_GUESSES;
  const rng = args.rng ?? SYSTEM;
  const { user, version, epoch } = args;
  checkRegistrationArgs(args.secret, maxGuesses);
  const policy: VersionPolicy = { maxGuesses, argon2: args.argon2 };
  const indices = args.nodes.map((n) => n.index);
  const k = rng.scalar();
  const kShares = shamir.split(k, args.threshold, indices, () => rng.scalar());
  const signingKey = rng.bytes(32);
  const verifyingKey = ed25519.getPublicKey(signingKey);

  const oprfOutput = oprf.evaluate(k, args.accessKey);
  const unlockKey = kdf.unlockKey(oprfOutput);
  const commitment = kdf.commitment(oprfOutput, args.accessKey);

  const s = rng.scalar();
  const sShares = shamir.split(s, args.threshold, indices, () => rng.scalar());
  const encryptionKey = kdf.encryptionKey(args.encryptionKeySeed, s.encoded);
  const encrypted = seal.encryptSecret(encryptionKey, args.secret, kdf.secretAd(user.tenant, user.userId, version));

  const requests = new Map<string, Register2>();
  for (const node of args.nodes) {
    const kI = kShares.get(node.index)!;
    const publicShare = Element.baseMult(kI);
    const sI = sShares.get(node.index)!;
    const id = toHex(node.nodeId);
    requests.set(id, {
      version,
      epoch,
      expected: args.expected.get(id) ?? null,
      oprfKeyShare: kI,
      oprfPublicShare: publicShare,
      oprfKeySignature: signOprfKey(signingKey, { user, node, version, epoch, publicShare, policy }),
      verifyingKey,
      commitment,
      unlockTag: kdf.unlockTag(unlockKey, node.nodeId),
      secretShare: sI,
      encryptedSecret: encrypted,
      secretCommitment: kdf.secretCommitment(unlockKey, node.nodeId, sI.encoded, encrypted),
      maxGuesses,
      argon2: args.argon2,
    });
  }
  return { version, epoch, requests };
}
