/**
 * Password and argument normalisation, and the Argon2id call.
 *
 * Passwords given as strings are normalised to Unicode NFKC and encoded as UTF-8, so the same
 * password typed on different keyboards or input methods stretches to the same key (the same
 * rule as the Python SDK, so a password works from either). Passwords given as bytes are used
 * exactly as given.
 */
import { ConfigError } from "../core/errors.js";
import { stretchPassword, type Argon2Params, type StretchedPassword } from "../core/kdf.js";
import { MAX_USER_ID_BYTES, type UserRef } from "../core/messages.js";

export const MAX_PASSWORD_BYTES = 4096;

/** A password: a string (NFKC-normalised, UTF-8) or bytes (used as is). */
export type Password = string | Uint8Array;

const utf8 = new TextEncoder();

/** The bytes Argon2id hashes: NFKC + UTF-8 for strings, unchanged for bytes. */
export function passwordBytes(password: Password): Uint8Array {
  let data: Uint8Array;
  if (typeof password === "string") data = utf8.encode(password.normalize("NFKC"));
  else if (password instanceof Uint8Array) data = Uint8Array.from(password);
  else throw new ConfigError("a password must be a string or a Uint8Array");
  if (data.length === 0) throw new ConfigError("the password must not be empty");
  if (data.length > MAX_PASSWORD_BYTES) {
    throw new ConfigError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes`);
  }
  return data;
}

/** Validate a user id (1..128 UTF-8 bytes) before any traffic. */
export function checkUser(tenant: string, userId: string): UserRef {
  if (typeof userId !== "string") throw new ConfigError("userId must be a string");
  const size = utf8.encode(userId).length;
  if (size < 1 || size > MAX_USER_ID_BYTES) {
    throw new ConfigError(`userId must be 1..${MAX_USER_ID_BYTES} UTF-8 bytes, got ${size}`);
  }
  return { tenant, userId };
}

/** Secrets are bytes (0..128; the length is checked with the other registration arguments). */
export function checkSecret(secret: Uint8Array): Uint8Array {
  if (!(secret instanceof Uint8Array)) throw new ConfigError("the secret must be a Uint8Array");
  return Uint8Array.from(secret);
}

/** Argon2id(password): the access key (OPRF input) and the encryption key seed. */
export async function stretch(
  password: Uint8Array,
  user: UserRef,
  version: Uint8Array,
  params: Argon2Params,
): Promise<StretchedPassword> {
  return await stretchPassword(password, user.tenant, user.userId, version, params);
}
