// Shared by the core tests: the repository's vector files and hex shorthands.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { fromHex, toHex } from "../../src/core/bytes.js";

export const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function vectors(name: string): any {
  return JSON.parse(readFileSync(join(REPO, "tests", "vectors", name), "utf8"));
}

export const h = (text: string): Uint8Array => fromHex(text);
export const hex = (data: Uint8Array): string => toHex(data);
