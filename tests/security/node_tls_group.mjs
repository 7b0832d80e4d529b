// What TLS key-exchange group does this Node.js negotiate with a pakr node (or coordinator)?
// Usage: node node_tls_group.mjs HOST:PORT CA_PEM_FILE [GROUPS]
// Connects with ALPN h2 as @grpc/grpc-js does (Node's tls module, the node's certificate as
// the only trust root), optionally asking for the groups list GROUPS (tls ecdhCurve), and
// prints one JSON line: Node and OpenSSL versions, TLS version, the key-exchange group Node
// reports, or the error when Node refuses the groups list.
import { readFileSync } from "node:fs";
import tls from "node:tls";

const [address, caFile, groups] = process.argv.slice(2);
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
let socket;
try {
  socket = tls.connect(options, () => {
    const key = socket.getEphemeralKeyInfo();
    report.protocol = socket.getProtocol();
    report.alpn = socket.alpnProtocol;
    report.group = key && key.name ? key.name : null;
    console.log(JSON.stringify(report));
    socket.end();
  });
  socket.setTimeout(10000, () => socket.destroy(new Error("timed out")));
  socket.on("error", (err) => {
    report.error = String(err.message || err);
    console.log(JSON.stringify(report));
    process.exitCode = 2;
  });
} catch (err) {
  report.error = String(err.message || err);
  console.log(JSON.stringify(report));
  process.exitCode = 2;
}
