/**
 * Access tokens (docs/protocol.md §2): EdDSA JWTs a tenant's backend mints, one per node
 * (`aud` = that node's id in hex). The SDK only carries tokens from the application's token
 * provider; minting lives here for Node.js backends, tests and the examples, byte-compatible
 * with the Python SDK's key files (`pakr-key/1`) and tokens.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { fromBase64Url, toBase64Url, utf8 } from "./bytes.js";
import { ConfigError } from "./errors.js";

export const MAX_TOKEN_BYTES = 1000;
export const MAX_LIFETIME_SECONDS = 24 * 3600;
export const DEFAULT_TTL_SECONDS = 300;
export const SCOPES: ReadonlySet<string> = new Set(["user", "audit"]);
export const MAX_TENANT_BYTES = 64;
const KEY_PREFIX = "ed25519:";
const KEY_FILE_FORMAT = "pakr-key/1";

/** `ed25519:<base64url>`, the text form of a public key in configs and manifests. */
export function publicKeyText(publicKey: Uint8Array): string {
  return KEY_PREFIX + toBase64Url(publicKey);
}

/** Parse `ed25519:<base64url of 32 bytes>` to the raw key; `ConfigError` for anything else. */
export function parsePublicKey(text: string): Uint8Array {
  if (typeof text !== "string" || !text.startsWith(KEY_PREFIX)) {
    throw new ConfigError("a public key must look like 'ed25519:<base64url>'");
  }
  let raw: Uint8Array;
  try {
    raw = fromBase64Url(text.slice(KEY_PREFIX.length));
  } catch {
    throw new ConfigError("a public key is not valid base64url");
  }
  if (raw.length !== 32) throw new ConfigError(`an Ed25519 public key has 32 bytes, this one has ${raw.length}`);
  return raw;
}

/** Tenant names are 1..64 bytes of UTF-8 without ':' (it separates the key number). */
export function checkTenantName(tenant: string): string {
  if (typeof tenant !== "string" || !tenant) throw new ConfigError("a tenant name must be a non-empty string");
  if (tenant.includes(":") || utf8(tenant).length > MAX_TENANT_BYTES) {
    throw new ConfigError(`tenant name ${JSON.stringify(tenant)} must be 1..64 bytes and contain no ':'`);
  }
  return tenant;
}

/** An Ed25519 signing key with a name and number (tenant token keys, the operator's key). */
export class SigningKey {
  readonly name: string;
  readonly number: number;
  readonly #privateKey: Uint8Array;

  constructor(name: string, number: number, privateKey: Uint8Array) {
    if (privateKey.length !== 32) throw new ConfigError("an Ed25519 private key is a 32-byte seed");
    this.name = name;
    this.number = number;
    this.#privateKey = Uint8Array.from(privateKey);
    Object.freeze(this);
  }

  /** A fresh random key. */
  static generate(name: string, number = 1): SigningKey {
    return new SigningKey(name, number, ed25519.utils.randomSecretKey());
  }

  /** Parse a key file's JSON content (`pakr-key/1`), checking the public key matches. */
  static fromDocument(doc: unknown): SigningKey {
    const d = doc as Record<string, unknown>;
    if (typeof d !== "object" || d === null || d.format !== KEY_FILE_FORMAT) {
      throw new ConfigError(`key file format must be '${KEY_FILE_FORMAT}'`);
    }
    const { name, number, private_key: privateKey } = d;
    if (typeof name !== "string" || typeof number !== "number" || !Number.isInteger(number) || typeof privateKey !== "string") {
      throw new ConfigError("key file is malformed: name must be text, number an integer, private_key base64url");
    }
    if (number < 1) throw new ConfigError("key file is malformed: number must be >= 1");
    let raw: Uint8Array;
    try {
      raw = fromBase64Url(privateKey);
    } catch {
      throw new ConfigError("key file is malformed: private_key is not base64url");
    }
    if (raw.length !== 32) throw new ConfigError("key file is malformed: private_key must be 32 bytes");
    const key = new SigningKey(name, number, raw);
    if ("public_key" in d && d.public_key !== key.publicKeyText) {
      throw new ConfigError("key file is inconsistent: public_key does not match private_key");
    }
    return key;
  }

  /** The key id `<name>:<number>` carried in JWT headers and node configs. */
  get kid(): string {
    return `${this.name}:${this.number}`;
  }

  get publicKey(): Uint8Array {
    return ed25519.getPublicKey(this.#privateKey);
  }

  get publicKeyText(): string {
    return publicKeyText(this.publicKey);
  }

  sign(message: Uint8Array): Uint8Array {
    return ed25519.sign(message, this.#privateKey);
  }

  toString(): string {
    return `SigningKey(${this.kid})`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}

/**
 * Mint a token for `userId` valid at one node (`audience` = node id hex): what a tenant's
 * backend does after its own login.
 */
export function issueToken(
  key: SigningKey,
  options: { userId: string; audience: string; scope?: string; ttl?: number; now?: number; jti?: string },
): string {
  const scope = options.scope ?? "user";
  const ttl = options.ttl ?? DEFAULT_TTL_SECONDS;
  if (!SCOPES.has(scope)) throw new ConfigError(`scope must be one of audit, user, not ${JSON.stringify(scope)}`);
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_LIFETIME_SECONDS) {
    throw new ConfigError(`token ttl must be 1..${MAX_LIFETIME_SECONDS} seconds, not ${ttl}`);
  }
  const issued = Math.floor(options.now ?? Date.now() / 1000);
  const jti = options.jti ?? toBase64Url(crypto.getRandomValues(new Uint8Array(16)));
  const header = { alg: "EdDSA", typ: "JWT", kid: key.kid };
  const claims = {
    iss: key.name,
    sub: options.userId,
    aud: options.audience,
    scope,
    iat: issued,
    nbf: issued,
    exp: issued + ttl,
    jti,
  };
  const encode = (obj: object): string => toBase64Url(utf8(JSON.stringify(obj)));
  const signingInput = `${encode(header)}.${encode(claims)}`;
  const token = `${signingInput}.${toBase64Url(key.sign(utf8(signingInput)))}`;
  if (token.length > MAX_TOKEN_BYTES) {
    throw new ConfigError("the token would exceed 1,000 bytes: shorten the user id or tenant");
  }
  return token;
}
