/** Node.js only: a dev token provider from a tenant key file (`pakr cluster up` writes one). */
import { readFile } from "node:fs/promises";
import { ConfigError } from "../core/errors.js";
import { SigningKey } from "../core/tokens.js";
import { devTokenProvider, type DevTokenProvider } from "./tokens.js";

/** A provider minting tokens from the tenant key file at `path` (development and tests). */
export async function devTokenProviderFromFile(path: string, options: { ttl?: number } = {}): Promise<DevTokenProvider> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new ConfigError(`tenant key file ${path} does not exist or cannot be read`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw new ConfigError(`tenant key file ${path} is not JSON`);
  }
  return devTokenProvider(SigningKey.fromDocument(document), options);
}
