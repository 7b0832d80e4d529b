/**
 * Byte-string helpers every protocol module needs: hex and base64url text forms, concatenation,
 * fixed-length checks, big-endian integers and constant-time comparison (the counterpart of
 * Python's `bytes` methods and `hmac.compare_digest`).
 */
import { MalformedMessage } from "./errors.js";

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/** Lowercase hex, as Python's `bytes.hex()`. */
export function toHex(data: Uint8Array): string {
  let out = "";
  for (const b of data) out += b.toString(16).padStart(2, "0");
  return out;
}

/** Parse hex (either case); `MalformedMessage` when it is not hex. */
export function fromHex(text: string, what = "value"): Uint8Array {
  if (typeof text !== "string" || !HEX.test(text)) throw new MalformedMessage(`${what} is not hex`);
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Unpadded base64url (manifests, keys, JWTs). */
export function toBase64Url(data: Uint8Array): string {
  let bin = "";
  for (const b of data) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Parse base64url, padded or not (Python's `urlsafe_b64decode` after re-padding);
 * `MalformedMessage` for any other character or an impossible length.
 */
export function fromBase64Url(text: string, what = "value"): Uint8Array {
  const stripped = typeof text === "string" ? text.trim().replace(/=+$/, "") : "";
  if (typeof text !== "string" || !B64URL.test(stripped) || stripped.length % 4 === 1) {
    throw new MalformedMessage(`${what} is not base64url`);
  }
  const bin = atob(stripped.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (stripped.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Standard base64 (PEM bodies); `MalformedMessage` on anything else. */
export function fromBase64(text: string, what = "value"): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean) || clean.length % 4 !== 0) {
    throw new MalformedMessage(`${what} is not base64`);
  }
  const bin = atob(clean);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The concatenation of `parts`. */
export function concat(...parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Constant-time equality of two byte strings (length is not secret). */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** Byte-wise ordering (Python's `bytes` comparison): negative, zero or positive. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** `value` as an unsigned big-endian integer of `length` bytes; RangeError when it does not fit. */
export function i2osp(value: number | bigint, length: number): Uint8Array {
  let v = BigInt(value);
  if (v < 0n || v >= 1n << BigInt(8 * length)) throw new RangeError(`${value} does not fit in ${length} bytes`);
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** An unsigned big-endian integer. */
export function os2ip(data: Uint8Array): bigint {
  let v = 0n;
  for (const b of data) v = (v << 8n) | BigInt(b);
  return v;
}

/** `value` checked to be exactly `length` bytes; `MalformedMessage` naming `name` otherwise. */
export function exact(name: string, value: Uint8Array, length: number): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw new MalformedMessage(`${name} must be ${length} bytes, got ${value instanceof Uint8Array ? value.length : "none"}`);
  }
  return value;
}

const encoder = new TextEncoder();

/** UTF-8 bytes of a string (lone surrogates are refused: Python cannot encode them either). */
export function utf8(text: string, what = "text"): Uint8Array {
  if (typeof text !== "string") throw new MalformedMessage(`${what} must be a string`);
  if (!text.isWellFormed()) throw new MalformedMessage(`${what} is not valid UTF-8`);
  return encoder.encode(text);
}
