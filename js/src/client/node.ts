/**
 * Node.js only: gRPC over HTTP/2 with the node's certificate pinned from the manifest, the
 * manifest serial state in a 0600 file, and manifests and tenant keys read from files.
 *
 * The pin works as in the Python SDK: the manifest's certificate is the only trust root of
 * the connection, and the certificate the node presents must be exactly it (its SHA-256 is
 * compared). A manifest that carries only the certificate's hash gets the certificate
 * fetched once and checked against the hash before it is used as that root.
 */
import { createHash, X509Certificate } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import * as tls from "node:tls";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { toHex } from "../core/bytes.js";
import { ConfigError, NodeUnreachable } from "../core/errors.js";
import type { Manifest, ManifestNode } from "../core/manifest.js";
import { MAX_MESSAGE_BYTES } from "../core/wire.js";
import { nodeRef } from "../core/messages.js";
import { ConnectNodeTransport } from "./connect-transport.js";
import { formatSerials, parseSerials, type SerialState } from "./trust.js";
import type { NodeTransport } from "./transport.js";

function splitAddress(address: string): readonly [string, number] {
  const at = address.lastIndexOf(":");
  const port = address.slice(at + 1);
  if (at < 0 || !/^\d+$/.test(port)) throw new ConfigError(`node address ${JSON.stringify(address)} must be host:port`);
  return [address.slice(0, at).replace(/^\[|\]$/g, ""), Number(port)];
}

/** Fetch a node's TLS certificate and return its PEM if its SHA-256 matches the pin. */
export function fetchPinnedCertificate(address: string, sha256: Uint8Array, timeout: number): Promise<string> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, rejectUnauthorized: false, ALPNProtocols: ["h2"], servername: host });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new NodeUnreachable("cannot fetch the TLS certificate: timed out"));
    }, timeout * 1000);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const der = socket.getPeerCertificate(false)?.raw;
      socket.end();
      if (!der || toHex(createHash("sha256").update(der).digest()) !== toHex(sha256)) {
        reject(new NodeUnreachable("the node's TLS certificate does not match the manifest's pin", { transient: false }));
        return;
      }
      resolve(new X509Certificate(der).toString());
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(new NodeUnreachable(`cannot fetch the TLS certificate: ${error.message}`));
    });
  });
}

function fingerprint(pem: string): string {
  return toHex(createHash("sha256").update(new X509Certificate(pem).raw).digest());
}

/**
 * The default Node.js transport: gRPC over TLS pinned to the manifest's certificate.
 * Plaintext (`http://`) only for dev manifests whose nodes run with --insecure.
 */
export function grpcTransport(node: ManifestNode, manifest: Manifest): NodeTransport {
  const insecure = manifest.dev && node.tlsCertPem === null && node.tlsCertSha256 === null;
  if (!insecure && node.tlsCertPem === null && node.tlsCertSha256 === null) {
    throw new ConfigError(
      `node${node.index} has no TLS certificate or certificate hash in the manifest;` +
        " plaintext is only allowed for dev manifests",
    );
  }
  splitAddress(node.address);
  const baseUrl = `${insecure ? "http" : "https"}://${node.address}`;
  let pem = node.tlsCertPem;
  let manager: Http2SessionManager | null = null;
  const make = async () => {
    manager?.abort();
    let nodeOptions = {};
    if (!insecure) {
      pem ??= await fetchPinnedCertificate(node.address, node.tlsCertSha256 as Uint8Array, 5);
      const pinned = fingerprint(pem);
      nodeOptions = {
        ca: [pem],
        // The presented certificate must be the pinned one, whatever name it carries.
        checkServerIdentity: (_host: string, cert: { raw: Buffer }) =>
          toHex(createHash("sha256").update(cert.raw).digest()) === pinned
            ? undefined
            : new Error("TLS certificate does not match the manifest's pin"),
      };
    }
    manager = new Http2SessionManager(baseUrl, { pingIntervalMs: 60_000 }, nodeOptions);
    return createGrpcTransport({
      baseUrl,
      sessionManager: manager,
      readMaxBytes: MAX_MESSAGE_BYTES,
      writeMaxBytes: MAX_MESSAGE_BYTES,
    });
  };
  const transport = new ConnectNodeTransport(
    nodeRef(node.nodeId, node.index),
    make,
    node.hpkePublicKey,
    node.address,
  );
  const close = transport.close.bind(transport);
  transport.close = async () => {
    await close();
    manager?.abort();
    manager = null;
  };
  return transport;
}

/**
 * The highest manifest serial seen per operator key, in a JSON file (0600) of the same
 * format the Python SDK writes, so both SDKs on one machine share one record. Writes go
 * through a temporary file and a rename; a record is read back after writing and written
 * again if a concurrent writer lowered it.
 */
export class FileSerialState implements SerialState {
  constructor(readonly path: string) {}

  private async read(): Promise<Map<string, number>> {
    let text: string | null;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") text = null;
      else throw new ConfigError(`cannot read manifest serial state ${this.path}: ${(error as Error).message}`);
    }
    return parseSerials(text, this.path);
  }

  async highest(operatorKey: string): Promise<number> {
    return (await this.read()).get(operatorKey) ?? 0;
  }

  async record(operatorKey: string, serial: number): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const serials = await this.read();
      if ((serials.get(operatorKey) ?? 0) >= serial) return;
      serials.set(operatorKey, serial);
      const tmp = `${this.path}.${process.pid}.tmp`;
      try {
        await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
        const handle = await open(tmp, "w", 0o600);
        try {
          await handle.writeFile(formatSerials(serials));
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(tmp, this.path);
      } catch (error) {
        await rm(tmp, { force: true });
        throw new ConfigError(`cannot write manifest serial state ${this.path}: ${(error as Error).message}`);
      }
    }
  }
}

/** A manifest document read from a JSON file. */
export async function readManifestFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(`cannot read the manifest ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ConfigError(`the manifest ${path} is not JSON`);
  }
}
