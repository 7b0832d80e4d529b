/**
 * The signed cluster manifest (docs/protocol.md §2): which nodes exist and how to reach them,
 * verified exactly as the Python SDK verifies it.
 *
 * The operator signs `"pakr/v1/manifest\0" || canonical JSON of the "manifest" object` with
 * Ed25519; canonical JSON is Python's `json.dumps(sort_keys=True, separators=(",", ":"),
 * ensure_ascii=False)`: keys sorted by code point, no whitespace, UTF-8, only `"`, `\` and
 * control characters escaped. The signature covers the body as received (unknown fields
 * included), so a newer manifest with fields this SDK does not know still verifies.
 *
 * {@link loadManifest} checks the pinned operator key, the signature, every shape rule, the
 * expiry and the serial (rollback); every failure is a `ConfigError` naming what is wrong.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { equal, fromBase64, fromBase64Url, fromHex, toBase64Url, toHex } from "./bytes.js";
import { ConfigError, MalformedMessage, WeakParameters } from "./errors.js";
import { HpkePublicKey } from "./hpke.js";
import { type Argon2Params, checkArgon2 } from "./kdf.js";
import { NODE_ID_LEN, type NodeRef, nodeRef } from "./messages.js";
import { verifyEd25519 } from "./policy.js";
import { MAX_INDEX, MIN_INDEX } from "./shamir.js";
import { type SigningKey, parsePublicKey } from "./tokens.js";

export const FORMAT = "pakr-manifest/1";
export const SIGNATURE_CONTEXT = new TextEncoder().encode("pakr/v1/manifest\x00");
export const MAX_NODES = 255;
export const MAX_DOCUMENT_BYTES = 1 << 20;

/** Pass as `operatorKey` to trust whatever key signed the manifest: dev clusters only. */
export const INSECURE_UNPINNED = Symbol("insecure-unpinned");
export type OperatorPin = string | typeof INSECURE_UNPINNED;

export const NOT_PINNED_MESSAGE =
  "no operator key pinned: pass the cluster operator's public key (ed25519:...), or INSECURE_UNPINNED for a dev cluster";

/** One node as the client sees it: identity, Shamir index, addresses, pinned TLS cert, HPKE key. */
export interface ManifestNode {
  readonly nodeId: Uint8Array;
  readonly index: number;
  /** `host:port` of the gRPC listener. */
  readonly address: string;
  readonly tlsCertPem: string | null;
  readonly tlsCertSha256: Uint8Array | null;
  readonly hpkePublicKey: HpkePublicKey | null;
  /** Where browsers reach the node's web listener (`https://node1.example:8443`), if it has one. */
  readonly webOrigin: string | null;
  /** The protocol's view of this node. */
  readonly ref: NodeRef;
  /** The node id as 32 hex characters (token audience). */
  readonly idHex: string;
  /** Whether the manifest pins no certificate (plaintext; dev manifests only). */
  readonly insecure: boolean;
}

/** An older node configuration clients may still recover from. */
export interface NodeSet {
  readonly threshold: number;
  readonly nodes: readonly ManifestNode[];
}

/** A verified cluster manifest. */
export interface Manifest {
  readonly clusterId: string;
  readonly serial: number;
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly threshold: number;
  readonly registerThreshold: number;
  readonly dev: boolean;
  readonly argon2: Argon2Params;
  readonly nodes: readonly ManifestNode[];
  readonly previousConfigurations: readonly NodeSet[];
}

/** The nodes' protocol identities, in manifest order. */
export function nodeRefs(manifest: Manifest): NodeRef[] {
  return manifest.nodes.map((n) => n.ref);
}

/** The manifest node with this id (`ConfigError` when there is none). */
export function manifestNode(manifest: Manifest, nodeId: Uint8Array): ManifestNode {
  const found = manifest.nodes.find((n) => equal(n.nodeId, nodeId));
  if (found === undefined) throw new ConfigError(`node ${toHex(nodeId)} is not in the manifest`);
  return found;
}

// --- canonical JSON ---------------------------------------------------------------------------

function compareCodePoints(a: string, b: string): number {
  const x = Array.from(a);
  const y = Array.from(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const d = (x[i] as string).codePointAt(0)! - (y[i] as string).codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

function canonicalJson(value: unknown): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    // Python writes the shortest round-trip repr, as JavaScript does, but switches to exponent
    // notation at other magnitudes, and JSON.parse cannot tell 1.0 from 1: only safe integers
    // and plain decimals between 1e-4 and 1e16 have the same spelling in both.
    if (Number.isSafeInteger(value)) return String(value);
    const magnitude = Math.abs(value);
    if (Number.isFinite(value) && !Number.isInteger(value) && magnitude >= 1e-4 && magnitude < 1e16) return String(value);
    throw new ConfigError("manifest holds a number without one canonical spelling (huge, tiny or integral float)");
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    const entries = Object.keys(value as object)
      .sort(compareCodePoints)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(",")}}`;
  }
  throw new ConfigError("manifest holds a value JSON cannot carry");
}

/** The bytes the operator signs: the context prefix and sorted, compact JSON (UTF-8). */
export function canonicalBytes(document: Readonly<Record<string, unknown>>): Uint8Array {
  const body = new TextEncoder().encode(canonicalJson(document));
  const out = new Uint8Array(SIGNATURE_CONTEXT.length + body.length);
  out.set(SIGNATURE_CONTEXT);
  out.set(body, SIGNATURE_CONTEXT.length);
  return out;
}

/** A signed document for `body` (tests and tools; the SDK only verifies). */
export function signManifest(body: Readonly<Record<string, unknown>>, key: SigningKey): Record<string, unknown> {
  return {
    manifest: body,
    signature: { alg: "Ed25519", public_key: key.publicKeyText, value: toBase64Url(key.sign(canonicalBytes(body))) },
  };
}

// --- parsing ----------------------------------------------------------------------------------

type Obj = Readonly<Record<string, unknown>>;
const isObject = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function int(obj: Obj, key: string, where: string): number {
  const value = obj[key];
  if (typeof value !== "number" || !Number.isSafeInteger(value)) throw new ConfigError(`manifest ${where}${key} must be an integer`);
  return value;
}

function str(obj: Obj, key: string, where: string): string {
  const value = obj[key];
  if (typeof value !== "string" || !value) throw new ConfigError(`manifest ${where}${key} must be a non-empty string`);
  return value;
}

/** SHA-256 of a PEM certificate's DER encoding (what the manifest may pin instead of the PEM). */
export function certFingerprint(pem: string): Uint8Array {
  const match = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(pem);
  let der: Uint8Array | null = null;
  if (match) {
    try {
      der = fromBase64(match[1] as string);
    } catch {
      der = null;
    }
  }
  if (der === null || !isCertificateShape(der)) throw new ConfigError("a node's tls_cert is not a PEM certificate");
  return sha256(der);
}

/** DER tag and length at `at`: [tag, start of contents, end of contents], or null. */
function tlv(der: Uint8Array, at: number): [number, number, number] | null {
  if (at + 2 > der.length) return null;
  const tag = der[at] as number;
  let length = der[at + 1] as number;
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4 || start + n > der.length) return null;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (der[start + i] as number);
    start += n;
  }
  return start + length <= der.length ? [tag, start, start + length] : null;
}

/**
 * The outline of an X.509 certificate (RFC 5280 §4.1): one SEQUENCE spanning the whole DER,
 * holding the tbsCertificate SEQUENCE, the signature algorithm SEQUENCE and a BIT STRING.
 * The client only pins the certificate's hash; the TLS stack parses the rest.
 */
function isCertificateShape(der: Uint8Array): boolean {
  const outer = tlv(der, 0);
  if (outer === null || outer[0] !== 0x30 || outer[2] !== der.length) return false;
  const tbs = tlv(der, outer[1]);
  const algorithm = tbs && tbs[0] === 0x30 ? tlv(der, tbs[2]) : null;
  const signature = algorithm && algorithm[0] === 0x30 ? tlv(der, algorithm[2]) : null;
  return signature !== null && signature[0] === 0x03 && signature[2] === outer[2];
}

const ORIGIN = /^(https?):\/\/([^/?#@:[\]\s]+|\[[0-9a-f:.]+\])(?::([1-9][0-9]{0,4}))?$/;

/**
 * A browser origin exactly as a browser serialises it: `scheme://host[:port]`, http or https,
 * lowercase, no path, query, user info or default port.
 */
export function parseWebOrigin(value: unknown, where: string): string {
  const m = typeof value === "string" ? ORIGIN.exec(value) : null;
  const port = m?.[3] === undefined ? null : Number(m[3]);
  const defaultPort = m?.[1] === "https" ? 443 : 80;
  if (m === null || value !== (value as string).toLowerCase() || (port !== null && (port > 65535 || port === defaultPort))) {
    throw new ConfigError(
      `${where} must be an origin like https://node.example:8443 (lowercase, no path, no default port), not ${JSON.stringify(value)}`,
    );
  }
  return value as string;
}

function parseNode(obj: unknown, where: string): ManifestNode {
  if (!isObject(obj)) throw new ConfigError(`manifest ${where} must be an object`);
  const idHex = str(obj, "id", where);
  if (!/^[0-9a-f]{32}$/.test(idHex)) throw new ConfigError(`manifest ${where}id must be 32 lowercase hex characters`);
  const nodeId = fromHex(idHex);
  const index = int(obj, "index", where);
  const address = str(obj, "address", where);
  const colon = address.lastIndexOf(":");
  const host = colon < 0 ? "" : address.slice(0, colon);
  const port = colon < 0 ? "" : address.slice(colon + 1);
  if (!host || !/^[0-9]+$/.test(port) || !(Number(port) > 0 && Number(port) < 65536)) {
    throw new ConfigError(`manifest ${where}address must be host:port, not ${JSON.stringify(address)}`);
  }
  const pem = obj.tls_cert ?? null;
  if (pem !== null && typeof pem !== "string") throw new ConfigError(`manifest ${where}tls_cert must be a PEM string or null`);
  const fpHex = obj.tls_cert_sha256 ?? null;
  let fingerprint: Uint8Array | null = null;
  if (fpHex !== null) {
    if (typeof fpHex !== "string" || !/^[0-9a-fA-F]{64}$/.test(fpHex)) {
      throw new ConfigError(`manifest ${where}tls_cert_sha256 must be 64 hex characters`);
    }
    fingerprint = fromHex(fpHex);
  }
  if (pem !== null) {
    const actual = certFingerprint(pem);
    if (fingerprint !== null && !equal(actual, fingerprint)) {
      throw new ConfigError(`manifest ${where}tls_cert does not match its tls_cert_sha256`);
    }
  }
  const hpkeText = obj.hpke_public_key ?? null;
  let hpkeKey: HpkePublicKey | null = null;
  if (hpkeText !== null) {
    if (typeof hpkeText !== "string") throw new ConfigError(`manifest ${where}hpke_public_key must be a base64url string`);
    try {
      hpkeKey = HpkePublicKey.fromText(hpkeText, `manifest ${where}hpke_public_key`);
    } catch (error) {
      if (error instanceof MalformedMessage) throw new ConfigError(error.message);
      throw error;
    }
  }
  const rawOrigin = obj.web_origin ?? null;
  const webOrigin = rawOrigin === null ? null : parseWebOrigin(rawOrigin, `manifest ${where}web_origin`);
  return Object.freeze({
    nodeId,
    index,
    address,
    tlsCertPem: pem as string | null,
    tlsCertSha256: fingerprint,
    hpkePublicKey: hpkeKey,
    webOrigin,
    ref: nodeRef(nodeId, index),
    idHex,
    insecure: pem === null && fingerprint === null,
  });
}

function parseNodes(value: unknown, where: string): ManifestNode[] {
  if (!Array.isArray(value) || value.length === 0) throw new ConfigError(`manifest ${where}nodes must be a non-empty list`);
  return value.map((item, i) => parseNode(item, `${where}nodes[${i}].`));
}

/** The rules on n, t and r (docs/protocol.md §2). */
export function checkShape(
  n: number,
  threshold: number,
  options: { dev: boolean; registerThreshold?: number | null; subject?: string },
): void {
  const subject = options.subject ?? "manifest ";
  if (n < 1 || n > MAX_NODES) throw new ConfigError(`${subject}has ${n} nodes; 1..${MAX_NODES} are allowed`);
  if (threshold < 1 || threshold > n) throw new ConfigError(`${subject}threshold ${threshold} must be in 1..${n}`);
  if (2 * threshold <= n) {
    throw new ConfigError(
      `${subject}threshold ${threshold} must exceed half of the ${n} nodes (so at most one version can be held by t nodes): use ${Math.floor(n / 2) + 1}..${n}`,
    );
  }
  if (threshold < 2 && !options.dev) throw new ConfigError(`${subject}threshold 1 is allowed only with "dev": true`);
  const r = options.registerThreshold;
  if (r !== undefined && r !== null && !(threshold <= r && r <= n)) {
    throw new ConfigError(`${subject}register_threshold ${r} must be in ${threshold}..${n}`);
  }
}

function checkNodeSet(nodes: readonly ManifestNode[], threshold: number, dev: boolean, where: string): void {
  const n = nodes.length;
  checkShape(n, threshold, { dev, subject: `manifest ${where}` });
  if (new Set(nodes.map((x) => x.idHex)).size !== n) throw new ConfigError(`manifest ${where}node ids must be unique`);
  if (new Set(nodes.map((x) => x.index)).size !== n) throw new ConfigError(`manifest ${where}node indices must be unique`);
  for (const node of nodes) {
    if (node.index < MIN_INDEX || node.index > MAX_INDEX) {
      throw new ConfigError(`manifest ${where}node index ${node.index} must be in 1..255`);
    }
    if (node.insecure && !dev) {
      throw new ConfigError(
        `manifest ${where}node ${node.idHex} pins no TLS certificate; plaintext nodes are allowed only in dev manifests`,
      );
    }
    if (node.webOrigin !== null && node.webOrigin.startsWith("http:") && !dev) {
      throw new ConfigError(
        `manifest ${where}node ${node.idHex} web_origin is plain http; browsers reach production nodes over https (http is for dev manifests only)`,
      );
    }
  }
}

/** Every shape rule of docs/protocol.md §2 that needs no clock or signature. */
export function checkManifest(manifest: Manifest): void {
  if (manifest.serial < 1) throw new ConfigError("manifest serial must be >= 1");
  if (manifest.expiresAt <= manifest.issuedAt) throw new ConfigError("manifest expires_at must be after issued_at");
  checkNodeSet(manifest.nodes, manifest.threshold, manifest.dev, "");
  for (const node of manifest.nodes) {
    if (node.hpkePublicKey === null) {
      throw new ConfigError(
        `manifest node ${node.idHex} has no hpke_public_key (protocol 2 seals Register2 to it); run \`pakr node hpke-keygen\` there and re-create the manifest`,
      );
    }
  }
  checkShape(manifest.nodes.length, manifest.threshold, { dev: manifest.dev, registerThreshold: manifest.registerThreshold });
  try {
    checkArgon2(manifest.argon2);
  } catch (error) {
    if (error instanceof WeakParameters) throw new ConfigError(`manifest ${error.message}`);
    throw error;
  }
  manifest.previousConfigurations.forEach((previous, i) =>
    checkNodeSet(previous.nodes, previous.threshold, manifest.dev, `previous_configurations[${i}].`),
  );
}

/** The unsigned manifest object → {@link Manifest}, checking every shape rule. */
export function parseManifest(document: Obj): Manifest {
  if (document.format !== FORMAT) throw new ConfigError(`manifest format must be '${FORMAT}'`);
  const dev = "dev" in document ? document.dev : false;
  if (typeof dev !== "boolean") throw new ConfigError("manifest dev must be true or false");
  const argon = document.argon2;
  if (!isObject(argon)) throw new ConfigError("manifest argon2 must be an object");
  const argon2: Argon2Params = Object.freeze({
    memoryKib: int(argon, "memory_kib", "argon2."),
    iterations: int(argon, "iterations", "argon2."),
    parallelism: int(argon, "parallelism", "argon2."),
  });
  const nodes = parseNodes(document.nodes, "");
  const previousRaw = "previous_configurations" in document ? document.previous_configurations : [];
  if (!Array.isArray(previousRaw)) throw new ConfigError("manifest previous_configurations must be a list");
  const previous: NodeSet[] = previousRaw.map((item: unknown, i: number) => {
    const where = `previous_configurations[${i}].`;
    if (!isObject(item)) throw new ConfigError(`manifest ${where.slice(0, -1)} must be an object`);
    return Object.freeze({ threshold: int(item, "threshold", where), nodes: parseNodes(item.nodes, where) });
  });
  const threshold = int(document, "threshold", "");
  const registerThreshold = "register_threshold" in document ? document.register_threshold : nodes.length;
  if (typeof registerThreshold !== "number" || !Number.isSafeInteger(registerThreshold)) {
    throw new ConfigError("manifest register_threshold must be an integer");
  }
  const manifest: Manifest = Object.freeze({
    clusterId: str(document, "cluster_id", ""),
    serial: int(document, "serial", ""),
    issuedAt: int(document, "issued_at", ""),
    expiresAt: int(document, "expires_at", ""),
    threshold,
    registerThreshold,
    dev,
    argon2,
    nodes,
    previousConfigurations: previous,
  });
  checkManifest(manifest);
  return manifest;
}

/** A signed manifest document from JSON text (at most 1 MiB) or as already parsed. */
export function readDocument(source: unknown): Obj {
  if (typeof source !== "string") {
    if (!isObject(source)) throw new ConfigError("manifest is not a JSON object");
    return source;
  }
  if (new TextEncoder().encode(source).length > MAX_DOCUMENT_BYTES) throw new ConfigError("manifest is larger than 1 MiB");
  let document: unknown;
  try {
    document = JSON.parse(source);
  } catch {
    throw new ConfigError("manifest is not valid JSON");
  }
  if (!isObject(document)) throw new ConfigError("manifest is not a JSON object");
  return document;
}

/** The public key a signed document names as its signer (not yet verified). */
export function embeddedSigner(source: unknown): string {
  const signature = readDocument(source).signature;
  const embedded = isObject(signature) ? signature.public_key : undefined;
  if (typeof embedded !== "string") throw new ConfigError("manifest signature public_key is missing");
  return embedded;
}

/**
 * Read, verify and check a signed manifest (JSON text or the parsed document). `operatorKey`
 * (`ed25519:...`) is the pinned operator who must have signed it; omitting it is refused, and
 * {@link INSECURE_UNPINNED} accepts the embedded key (dev clusters only). `minSerial` refuses
 * a rollback to an older manifest than one already seen. `now` is in seconds.
 */
export function loadManifest(
  source: unknown,
  options: { operatorKey?: OperatorPin | null; now?: number; minSerial?: number } = {},
): Manifest {
  const operatorKey = options.operatorKey ?? null;
  if (operatorKey === null) throw new ConfigError(NOT_PINNED_MESSAGE);
  const document = readDocument(source);
  const body = document.manifest;
  const signature = document.signature;
  if (!isObject(body) || !isObject(signature)) {
    throw new ConfigError("a signed manifest has a 'manifest' and a 'signature' object");
  }
  if (signature.alg !== "Ed25519") throw new ConfigError("manifest signature alg must be Ed25519");
  const embedded = embeddedSigner(document);
  const publicKey = parsePublicKey(operatorKey === INSECURE_UNPINNED ? embedded : operatorKey);
  if (!equal(parsePublicKey(embedded), publicKey)) {
    throw new ConfigError("manifest is signed by a different operator key than the pinned one");
  }
  let raw: Uint8Array;
  try {
    raw = fromBase64Url(String(signature.value));
  } catch {
    throw new ConfigError("manifest signature value is not base64url");
  }
  if (!verifyEd25519(raw, canonicalBytes(body), publicKey)) {
    throw new ConfigError("manifest signature is invalid: it was altered or not signed");
  }
  const manifest = parseManifest(body);
  const now = options.now ?? Date.now() / 1000;
  if (now >= manifest.expiresAt) throw new ConfigError("manifest has expired: ask the operator for a fresh one");
  const minSerial = options.minSerial ?? 0;
  if (manifest.serial < minSerial) {
    throw new ConfigError(
      `manifest serial ${manifest.serial} is older than serial ${minSerial} already seen (a rollback?); get the current manifest from the operator`,
    );
  }
  return manifest;
}
