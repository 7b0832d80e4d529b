/**
 * Browsers: the node's web listener (the manifest's `web_origin`), over the Connect protocol
 * (binary) or gRPC-Web, with @connectrpc/connect-web.
 *
 * A browser cannot pin a certificate: the web listener's TLS is whatever the browser trusts.
 * What matters does not depend on it: the shares a registration sends are sealed to the
 * node's HPKE key from the signed manifest, and a recovery's shares come back sealed to a
 * fresh key of this client, so a TLS terminator in front of the listener learns nothing that
 * opens a secret.
 */
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { ConfigError } from "../core/errors.js";
import type { Manifest, ManifestNode } from "../core/manifest.js";
import { nodeRef } from "../core/messages.js";
import { ConnectNodeTransport } from "./connect-transport.js";
import type { NodeTransport } from "./transport.js";

export type WebProtocol = "connect" | "grpc-web";

/** A transport factory for the web listeners, speaking `protocol` (default Connect). */
export function webTransportFactory(
  protocol: WebProtocol = "connect",
): (node: ManifestNode, manifest: Manifest) => NodeTransport {
  return (node) => {
    const origin = node.webOrigin;
    if (origin === null || origin === undefined) {
      throw new ConfigError(
        `the manifest lists no web_origin for node${node.index}: a browser reaches only nodes` +
          " with a web listener (pakr cluster up turns it on; operators set web_origin)",
      );
    }
    const make = () =>
      protocol === "grpc-web"
        ? createGrpcWebTransport({ baseUrl: origin, useBinaryFormat: true })
        : createConnectTransport({ baseUrl: origin, useBinaryFormat: true });
    return new ConnectNodeTransport(nodeRef(node.nodeId, node.index), make, node.hpkePublicKey, origin);
  };
}

/** The browser default: the Connect protocol to every node's web origin. */
export const webTransport = webTransportFactory("connect");
