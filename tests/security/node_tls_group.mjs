// What TLS key-exchange group does this Node.js negotiate with a pakr node (or coordinator)?
// Usage: node node_tls_group.mjs HOST:PORT CA_PEM_FILE [GROUPS|-] [RPC_PATH]
// Connects with ALPN h2 as @grpc/grpc-js does (Node's tls module, the node's certificate as
// the only trust root), optionally asking for the groups list GROUPS (tls ecdhCurve), and
// prints one JSON line: Node and OpenSSL versions, TLS version, the key-exchange group Node
// reports, or the error when Node refuses the groups list. With RPC_PATH it also sends one
// gRPC call with an empty message over HTTP/2 on that connection and reports its grpc-status.
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import tls from "node:tls";

const [address, caFile, groupsArg, rpcPath] = process.argv.slice(2);
const groups = groupsArg && groupsArg !== "-" ? groupsArg : undefined;
const sep = address.lastIndexOf(":");
const report = { node: process.version, openssl: process.versions.openssl, requested: groups ?? null };
const options = {
  host: address.slice(0, sep),
  port: Number(address.slice(sep + 1)),
  ca: readFileSync(caFile),
  servername: "localhost",
  ALPNProtocols: ["h2"],
  minVersion: "TLSv1.3",
};
if (groups) options.ecdhCurve = groups;

function fail(err) {
  report.error = String((err && err.message) || err);
  console.log(JSON.stringify(report));
  process.exitCode = 2;
}

function describe(socket) {
  const key = socket.getEphemeralKeyInfo();
  report.protocol = socket.getProtocol();
  report.alpn = socket.alpnProtocol;
  report.group = key && key.name ? key.name : null;
}

function rpc(socket) {
  const session = http2.connect(`https://localhost:${options.port}`, { createConnection: () => socket });
  session.on("error", fail);
  const call = session.request({
    ":method": "POST",
    ":path": rpcPath,
    "content-type": "application/grpc",
    te: "trailers",
  });
  call.on("response", (headers) => {
    if (headers["grpc-status"] !== undefined) report.grpc_status = Number(headers["grpc-status"]);
  });
  call.on("trailers", (trailers) => {
    report.grpc_status = Number(trailers["grpc-status"]);
  });
  call.on("data", () => {});
  call.on("end", () => {
    console.log(JSON.stringify(report));
    session.close();
  });
  call.on("error", fail);
  call.end(Buffer.alloc(5)); // uncompressed, zero-length message
}

try {
  const socket = tls.connect(options, () => {
    describe(socket);
    if (rpcPath) {
      rpc(socket);
    } else {
      console.log(JSON.stringify(report));
      socket.end();
    }
  });
  socket.setTimeout(10000, () => socket.destroy(new Error("timed out")));
  socket.on("error", fail);
} catch (err) {
  fail(err);
}
