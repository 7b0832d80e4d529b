/**
 * Access-token providers: where the SDK gets one token per node per call.
 *
 * A provider is any function `(userId, audience) => string | Promise<string>`, where
 * `audience` is the node id in lowercase hex (one token per node, so a node cannot replay a
 * client's token to its peers). In production it asks the application's backend, which mints
 * tokens after its own login; `DevTokenProvider` mints them locally from a tenant key, for
 * development and tests only (a browser app must never hold a tenant key).
 */
import { InvalidAuth } from "../core/errors.js";
import { DEFAULT_TTL_SECONDS, issueToken, type SigningKey } from "../core/tokens.js";

/** `(userId, audienceNodeIdHex) -> token`, sync or async. */
export type TokenProvider = (userId: string, audience: string) => string | Promise<string>;

/** Call `provider` and check it returned a non-empty token string. */
export async function fetchToken(
  provider: TokenProvider,
  userId: string,
  audience: string,
): Promise<string> {
  const result = await provider(userId, audience);
  if (typeof result !== "string" || result.length === 0) {
    throw new InvalidAuth(
      "the token provider returned no token; it must return the JWT as a non-empty string",
    );
  }
  return result;
}

/** A cached token is not reused within this many seconds of its expiry. */
export const REUSE_MARGIN_SECONDS = 30;

/** The `exp` claim of a JWT, read without verification (only to schedule reuse). */
export function tokenExpiry(token: string): number | null {
  try {
    const payload = token.split(".")[1];
    if (payload === undefined) return null;
    const b64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const text = new TextDecoder().decode(
      Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0)),
    );
    const claims: unknown = JSON.parse(text);
    if (claims === null || typeof claims !== "object") return null;
    const exp = (claims as Record<string, unknown>)["exp"];
    return typeof exp === "number" && Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

/** Reusable tokens by (userId, audience), bounded and expiring (never logged). */
export class TokenCache {
  private readonly entries = new Map<string, { token: string; reuseUntil: number }>();

  constructor(private readonly maxEntries = 4096) {}

  private static key(userId: string, audience: string): string {
    return JSON.stringify([userId, audience]);
  }

  /** A cached token still valid for a while, or null. */
  get(userId: string, audience: string): string | null {
    const key = TokenCache.key(userId, audience);
    const entry = this.entries.get(key);
    if (entry === undefined) return null;
    if (Date.now() / 1000 >= entry.reuseUntil) {
      this.entries.delete(key);
      return null;
    }
    this.entries.delete(key); // most recently used last
    this.entries.set(key, entry);
    return entry.token;
  }

  /** Remember `token` if its expiry is known and not imminent. */
  put(userId: string, audience: string, token: string): void {
    const exp = tokenExpiry(token);
    if (exp === null || exp - REUSE_MARGIN_SECONDS <= Date.now() / 1000) return;
    const key = TokenCache.key(userId, audience);
    this.entries.delete(key);
    this.entries.set(key, { token, reuseUntil: exp - REUSE_MARGIN_SECONDS });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  /** Drop a token a node rejected. */
  forget(userId: string, audience: string): void {
    this.entries.delete(TokenCache.key(userId, audience));
  }

  toString(): string {
    return `TokenCache(${this.entries.size} entries)`;
  }
}

/**
 * A token provider that mints tokens locally with a tenant's key (development and tests only:
 * an application never ships a tenant key to its clients; its backend mints tokens after its
 * own login). `scope` is "user" (the user's own operations) or "audit" (`Client.audit`).
 */
export interface DevTokenProvider extends TokenProvider {
  readonly tenant: string;
  withScope(scope: string): DevTokenProvider;
}

export function devTokenProvider(
  key: SigningKey,
  options: { ttl?: number; scope?: string } = {},
): DevTokenProvider {
  const ttl = options.ttl ?? DEFAULT_TTL_SECONDS;
  const scope = options.scope ?? "user";
  const provider = (userId: string, audience: string): string =>
    issueToken(key, { userId, audience, ttl, scope });
  return Object.assign(provider, {
    tenant: key.name,
    withScope: (other: string) => devTokenProvider(key, { ttl, scope: other }),
    toString: () => `DevTokenProvider(kid=${key.kid})`,
  });
}
