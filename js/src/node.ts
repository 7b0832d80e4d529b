/**
 * pakr for Node.js: the browser-safe API of `index.ts`, with gRPC over HTTP/2 and each node's
 * certificate pinned from the manifest as the default transport, manifests read from files,
 * a 0600 serial-state file (shared with the Python SDK), and dev tokens from a tenant key file.
 */
import { platform } from "./client/client.js";
import { FileSerialState, grpcTransport, readManifestFile } from "./client/node.js";

platform.transportFactory = grpcTransport;
platform.readSource = readManifestFile;
platform.serialStateAt = (path) => new FileSerialState(path);

export * from "./index.js";
export { FileSerialState, fetchPinnedCertificate, grpcTransport, readManifestFile } from "./client/node.js";
export { devTokenProviderFromFile } from "./client/node-tokens.js";
