/**
 * How the SDK decides to trust a manifest: a pinned operator key and rollback protection.
 *
 * A manifest names the nodes a client sends its password-derived requests to, so a client
 * must know who may sign one (the operator key, pinned by the application, in a browser app
 * best in the bundle itself) and must not go back to an older manifest once it has seen a
 * newer one (an attacker replaying an old, validly signed manifest could point it at nodes the
 * operator has since retired). A `SerialState` remembers the highest serial seen per operator
 * key: in Node.js a 0600 JSON file shared with the Python SDK (`node.ts`), in a browser the
 * application's own storage through `serialStateFromStorage`.
 */
import { ConfigError } from "../core/errors.js";
import {
  INSECURE_UNPINNED,
  NOT_PINNED_MESSAGE,
  embeddedSigner,
  loadManifest,
  readDocument,
  type Manifest,
  type OperatorPin,
} from "../core/manifest.js";

export const STATE_FORMAT = "pakr-manifest-serials/1";

/** The highest manifest serial seen per operator key, kept where the application says. */
export interface SerialState {
  highest(operatorKey: string): Promise<number>;
  record(operatorKey: string, serial: number): Promise<void>;
}

/** Parse the serial-state document (the Python SDK's file format); damage is an error rather
 * than a silent reset, which would re-open the rollback it exists to close. */
export function parseSerials(text: string | null, where: string): Map<string, number> {
  if (text === null) return new Map();
  try {
    const document = JSON.parse(text) as { format?: unknown; serials?: unknown };
    const serials = document.serials;
    if (document.format !== STATE_FORMAT || serials === null || typeof serials !== "object") throw new Error();
    const out = new Map<string, number>();
    for (const [key, value] of Object.entries(serials as Record<string, unknown>)) {
      if (typeof value !== "number" || !Number.isSafeInteger(value)) throw new Error();
      out.set(key, value);
    }
    return out;
  } catch {
    throw new ConfigError(
      `manifest serial state ${where} is damaged; restore it or delete it knowingly` +
        " (rollback protection restarts from the next manifest)",
    );
  }
}

export function formatSerials(serials: ReadonlyMap<string, number>): string {
  return JSON.stringify({ format: STATE_FORMAT, serials: Object.fromEntries(serials) }, null, 2) + "\n";
}

/**
 * A SerialState over a string key-value store the application provides (a browser's
 * `localStorage`, IndexedDB behind a promise, an extension's storage): `get(key)` returns
 * the stored text or null, `set(key, text)` stores it. The same document format as the file.
 */
export function serialStateFromStorage(
  get: (key: string) => string | null | Promise<string | null>,
  set: (key: string, value: string) => void | Promise<void>,
  key = "pakr-manifest-serials",
): SerialState {
  return {
    async highest(operatorKey) {
      return parseSerials(await get(key), key).get(operatorKey) ?? 0;
    },
    async record(operatorKey, serial) {
      const serials = parseSerials(await get(key), key);
      if ((serials.get(operatorKey) ?? 0) >= serial) return;
      serials.set(operatorKey, serial);
      await set(key, formatSerials(serials));
    },
  };
}

/** Called when a client trusts a manifest whose signer nobody pinned (dev clusters only). */
export type UnpinnedWarning = (message: string) => void;

const UNPINNED_WARNING =
  "pakr: the manifest's operator key is not pinned (INSECURE_UNPINNED); whoever supplies the" +
  " manifest chooses the nodes. Pin operatorKey outside dev clusters.";

/**
 * The manifest in `document` if the pinned operator signed it and it is not a rollback.
 *
 * `operatorKey` is required: an `ed25519:...` public key, or INSECURE_UNPINNED (warns). With
 * `serialState` the serial must be at least the highest one recorded for that key, and a
 * newer one is recorded.
 */
export async function loadTrustedManifest(
  document: unknown,
  options: {
    operatorKey: OperatorPin | null | undefined;
    minSerial?: number;
    serialState?: SerialState | null;
    warn?: UnpinnedWarning;
  },
): Promise<Manifest> {
  const { operatorKey, minSerial = 0, serialState = null } = options;
  if (operatorKey === null || operatorKey === undefined) throw new ConfigError(NOT_PINNED_MESSAGE);
  if (typeof document !== "string" && (document === null || typeof document !== "object")) {
    throw new ConfigError("a manifest is a JSON document (an object, or its text)");
  }
  const doc = readDocument(document as string | Record<string, unknown>);
  let key: string;
  if (operatorKey === INSECURE_UNPINNED) {
    (options.warn ?? ((m: string) => console.warn(m)))(UNPINNED_WARNING);
    key = embeddedSigner(doc);
  } else {
    key = operatorKey as string;
  }
  const floor = serialState !== null ? Math.max(minSerial, await serialState.highest(key)) : minSerial;
  const manifest = loadManifest(doc, { operatorKey, minSerial: floor });
  if (serialState !== null) await serialState.record(key, manifest.serial);
  return manifest;
}
