/**
 * Sealing the user's static secret: fixed-size padding plus ChaCha20-Poly1305
 * (`@noble/ciphers`). Every secret is padded to the same 129 bytes so the ciphertext length
 * reveals nothing about the secret's length.
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { concat, equal } from "./bytes.js";
import { ConfigError, MalformedMessage } from "./errors.js";

export const MAX_SECRET_LEN = 128;
export const PADDED_LEN = 129;
export const TAG_LEN = 16;
export const CIPHERTEXT_LEN = 145;
export const KEY_LEN = 32;

const NONCE = new Uint8Array(12);

/** One length byte, the secret, zeros up to 129 bytes; `ConfigError` past 128 bytes. */
export function pad(secret: Uint8Array): Uint8Array {
  if (secret.length > MAX_SECRET_LEN) {
    throw new ConfigError(`the secret is ${secret.length} bytes; pakr stores at most ${MAX_SECRET_LEN}`);
  }
  return concat(Uint8Array.of(secret.length), secret, new Uint8Array(MAX_SECRET_LEN - secret.length));
}

/** Inverse of {@link pad}; `MalformedMessage` on a wrong length, length byte or non-zero padding. */
export function unpad(padded: Uint8Array): Uint8Array {
  if (padded.length !== PADDED_LEN) throw new MalformedMessage(`padded secret must be ${PADDED_LEN} bytes`);
  const n = padded[0] as number;
  if (n > MAX_SECRET_LEN) throw new MalformedMessage("padded secret has an invalid length byte");
  if (!equal(padded.subarray(1 + n), new Uint8Array(MAX_SECRET_LEN - n))) {
    throw new MalformedMessage("padded secret has non-zero padding");
  }
  return padded.slice(1, 1 + n);
}

function aead(encryptionKey: Uint8Array, ad: Uint8Array) {
  if (encryptionKey.length !== KEY_LEN) throw new RangeError(`the encryption key must be ${KEY_LEN} bytes`);
  return chacha20poly1305(encryptionKey, NONCE, ad);
}

/**
 * ChaCha20-Poly1305 of `pad(secret)` with a zero nonce: safe because every key encrypts exactly
 * one plaintext (a fresh scalar s and version per registration; retries resend the same bytes).
 */
export function encryptSecret(encryptionKey: Uint8Array, secret: Uint8Array, ad: Uint8Array): Uint8Array {
  return aead(encryptionKey, ad).encrypt(pad(secret));
}

/** Decrypt and unpad; `MalformedMessage` on a wrong length or failed authentication. */
export function decryptSecret(encryptionKey: Uint8Array, ciphertext: Uint8Array, ad: Uint8Array): Uint8Array {
  if (ciphertext.length !== CIPHERTEXT_LEN) throw new MalformedMessage(`secret ciphertext must be ${CIPHERTEXT_LEN} bytes`);
  let padded: Uint8Array;
  try {
    padded = aead(encryptionKey, ad).decrypt(ciphertext);
  } catch {
    throw new MalformedMessage("secret ciphertext failed authentication");
  }
  return unpad(padded);
}
