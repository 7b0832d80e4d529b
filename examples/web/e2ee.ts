/**
 * The example app's own end-to-end encryption: an X25519 key pair from a 32-byte seed, and
 * messages sealed to its public key (ephemeral X25519, HKDF-SHA256, ChaCha20-Poly1305), all
 * from the noble libraries. pakr stores only the seed; the app server stores only the public
 * key and ciphertexts.
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";

const INFO = new TextEncoder().encode("pakr-example-web/v1 message");

export function publicKeyOf(seed: Uint8Array): Uint8Array {
  return x25519.getPublicKey(seed);
}

function key(shared: Uint8Array, ephemeral: Uint8Array, recipient: Uint8Array): Uint8Array {
  const salt = new Uint8Array([...ephemeral, ...recipient]);
  return hkdf(sha256, shared, salt, INFO, 32);
}

/** Seal `text` to `recipient` (anyone can; only the seed's owner opens it). */
export function seal(text: string, recipient: Uint8Array): Uint8Array {
  const ephemeral = crypto.getRandomValues(new Uint8Array(32));
  const ephemeralPublic = x25519.getPublicKey(ephemeral);
  const k = key(x25519.getSharedSecret(ephemeral, recipient), ephemeralPublic, recipient);
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const body = chacha20poly1305(k, nonce).encrypt(new TextEncoder().encode(text));
  return new Uint8Array([...ephemeralPublic, ...nonce, ...body]);
}

/** Open a sealed message with the recipient's seed; throws when it was not sealed to it. */
export function open(sealed: Uint8Array, seed: Uint8Array): string {
  const ephemeralPublic = sealed.slice(0, 32);
  const nonce = sealed.slice(32, 44);
  const k = key(x25519.getSharedSecret(seed, ephemeralPublic), ephemeralPublic, publicKeyOf(seed));
  return new TextDecoder().decode(chacha20poly1305(k, nonce).decrypt(sealed.slice(44)));
}

export function toHex(data: Uint8Array): string {
  return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
}
