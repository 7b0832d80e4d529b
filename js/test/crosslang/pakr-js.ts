// A small driver of the TypeScript SDK (Node.js, gRPC with pinned certificates) for the
// cross-language tests in tests/crosslang: one JSON request on stdin (passwords and secrets
// never on argv), one JSON answer on stdout. Errors come back by class name with their
// fields, so the Python side can compare them with its own.
//
//   {"op": "register" | "recover" | "change_password" | "delete" | "status",
//    "manifest": PATH, "operator_key": "ed25519:...", "tenant": "dev", "tenant_key": PATH,
//    "user_id": "...", "password": "...", "new_password": "...", "secret_hex": "...",
//    "max_guesses": 5, "if_exists": "refuse"}
import {
  Client,
  InvalidPassword,
  PakrError,
  ProtocolError,
  devTokenProviderFromFile,
  grpcTransport,
  webTransport,
  type NodeTransport,
  type TokenProvider,
} from "../../src/node.js";
import { Element } from "../../src/core/group.js";
import { text } from "node:stream/consumers";

interface Request {
  op: string;
  manifest: string;
  operator_key: string;
  tenant: string;
  tenant_key: string;
  user_id: string;
  password?: string;
  new_password?: string;
  secret_hex?: string;
  max_guesses?: number;
  if_exists?: "refuse" | "replace";
  deadline?: number;
  /** Nodes (by index) whose Recover2 replies this driver falsifies: a Byzantine node. */
  lying_nodes?: number[];
  /** "web": the browser transport (Connect over the nodes' web listeners) from Node.js. */
  transport?: "grpc" | "web";
  /** "garbage": the provider returns a string that is no token; "throw": it fails. */
  token?: "garbage" | "throw";
}

const warnings: string[] = [];

/** A node that answers Recover2 with an evaluation of its own choosing (a valid element, the
 * rest of the reply untouched): only verification can tell. */
function lying(transport: NodeTransport): NodeTransport {
  const honest = transport.recover2.bind(transport);
  transport.recover2 = async (...args) => ({
    ...(await honest(...args)),
    evaluatedElement: Element.generator(),
  });
  return transport;
}

const hex = (data: Uint8Array) => Buffer.from(data).toString("hex");

async function tokens(request: Request): Promise<TokenProvider> {
  const dev = await devTokenProviderFromFile(request.tenant_key);
  if (request.token === "garbage") return () => "not.a.token";
  if (request.token === "throw") {
    return () => {
      throw new TypeError("the backend is down");
    };
  }
  return dev;
}

async function run(request: Request): Promise<object> {
  const client = await Client.fromManifest(request.manifest, {
    operatorKey: request.operator_key,
    tenant: request.tenant,
    tokenProvider: await tokens(request),
    deadline: request.deadline ?? 5,
    transportFactory: (node, manifest) => {
      const transport = (request.transport === "web" ? webTransport : grpcTransport)(node, manifest);
      return request.lying_nodes?.includes(node.index) ? lying(transport) : transport;
    },
    log: { info: () => undefined, warn: (message) => void warnings.push(message) },
  });
  try {
    switch (request.op) {
      case "register": {
        const registration = await client.register(
          request.user_id,
          request.password as string,
          Uint8Array.from(Buffer.from(request.secret_hex ?? "", "hex")),
          {
            ...(request.max_guesses !== undefined ? { maxGuesses: request.max_guesses } : {}),
            ifExists: request.if_exists ?? "refuse",
          },
        );
        return { ok: true, version: registration.version, replaced: registration.replaced };
      }
      case "recover": {
        const secret = await client.recover(request.user_id, request.password as string);
        return { ok: true, secret_hex: hex(secret), warnings };
      }
      case "change_password":
        await client.changePassword(request.user_id, request.password as string, request.new_password as string);
        return { ok: true };
      case "delete":
        await client.delete(request.user_id);
        return { ok: true };
      case "status": {
        const report = await client.status(request.user_id);
        return {
          ok: true,
          registered: report.registered,
          guesses_remaining: report.guessesRemaining,
          locked_out: report.lockedOut,
        };
      }
      case "audit": {
        const page = await client.audit(request.user_id, { limit: 1000 });
        return { ok: true, ops: page.events.map((e) => [e.nodeIndex, e.op, e.outcome]), more: page.more };
      }
      default:
        return { ok: false, error: { name: "UsageError", message: `unknown op ${request.op}` } };
    }
  } finally {
    await client.close();
  }
}

try {
  const answer = await run(JSON.parse(await text(process.stdin)) as Request);
  process.stdout.write(JSON.stringify(answer) + "\n");
} catch (error) {
  if (!(error instanceof PakrError)) throw error;
  const fields: Record<string, unknown> = { name: error.name, message: error.message };
  if (error instanceof InvalidPassword) fields.guesses_remaining = error.guessesRemaining;
  if (error instanceof ProtocolError) fields.nodes = error.nodes;
  fields.warnings = warnings;
  process.stdout.write(JSON.stringify({ ok: false, error: fields }) + "\n");
}
