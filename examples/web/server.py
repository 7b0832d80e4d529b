"""The example web app's server: its static page and a minimal backend, on an origin of its own.

Serves ``dist/`` (the bundled page), ``/manifest.json`` (the cluster's signed manifest),
``/config.json`` (the tenant), ``/token`` (access tokens for the pakr nodes, minted with the
tenant key: a real app does this only after its own login, for the user who logged in) and
``/users/<id>`` (each account's public key and a message encrypted to it; no secret ever).

    python examples/web/server.py --cluster DIR [--port 8080] [--dist DIR]

``DIR`` is a ``pakr cluster up --dir`` directory. The page's origin differs from every node's
web origin, as in production: the nodes' CORS rules decide whether it may call them.
"""

from __future__ import annotations

import argparse
import json
import threading
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pakr
from pakr.coordinator.localcluster import LocalCluster

HERE = Path(__file__).resolve().parent
MAX_BODY = 64 * 1024


def make_handler(cluster: LocalCluster, dist: Path) -> type[SimpleHTTPRequestHandler]:
    manifest = cluster.manifest_path.read_bytes()
    tokens = pakr.dev_token_provider(cluster.tenant_key_path)
    accounts: dict[str, dict[str, str]] = {}
    lock = threading.Lock()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(dist), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # tokens travel in query strings and bodies: keep them out of logs

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.send_header("cache-control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/manifest.json":
                return self._send(HTTPStatus.OK, manifest)
            if url.path == "/config.json":
                return self._send(HTTPStatus.OK, json.dumps({"tenant": cluster.tenant}).encode())
            if url.path == "/token":
                query = parse_qs(url.query)
                user, audience = query.get("user", [""])[0], query.get("audience", [""])[0]
                if not user or not audience:
                    return self._send(HTTPStatus.BAD_REQUEST, b"{}")
                return self._send(HTTPStatus.OK, tokens(user, audience).encode(), "text/plain")
            if url.path.startswith("/users/"):
                with lock:
                    account = accounts.get(unquote(url.path[len("/users/") :]))
                if account is None:
                    return self._send(HTTPStatus.NOT_FOUND, b"{}")
                return self._send(HTTPStatus.OK, json.dumps(account).encode())
            return super().do_GET()

        def do_PUT(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("content-length", "0"))
            if not url.path.startswith("/users/") or not 0 < length <= MAX_BODY:
                return self._send(HTTPStatus.BAD_REQUEST, b"{}")
            body = json.loads(self.rfile.read(length))
            account = {"publicKey": str(body["publicKey"]), "message": str(body["message"])}
            with lock:
                accounts[unquote(url.path[len("/users/") :])] = account
            return self._send(HTTPStatus.OK, b"{}")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", required=True, help="a pakr cluster up --dir directory")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--dist", default=str(HERE / "dist"), help="the bundled page")
    args = parser.parse_args()
    cluster = LocalCluster.open(args.cluster)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(cluster, Path(args.dist)))
    print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
