"""What a base install lacks to run a node or a coordinator, and the one line that says so.

``pip install pakr`` is the SDK alone; the servers' packages come with ``pakr[node]``
(pyproject.toml's ``node`` extra). The ``pakr`` command and ``python -m pakr.node`` turn an
import of a missing server package into :func:`explain_missing`'s message instead of a
traceback. Importing this module needs nothing beyond the standard library.
"""

from __future__ import annotations

import sys
from typing import NoReturn

INSTALL_HINT = "pip install 'pakr[node]'"

# Top-level module -> the distribution of the `node` extra that provides it
# (tests/client/test_packaging.py checks this against pyproject.toml).
SERVER_MODULES = {
    "grpc_health": "grpcio-health-checking",
    "psycopg": "psycopg",
    "psycopg_pool": "psycopg-pool",
    "prometheus_client": "prometheus-client",
    "tomli_w": "tomli-w",
    "psutil": "psutil",
    "connectrpc": "connectrpc",  # the web listener (pakr.node.web)
    "uvicorn": "uvicorn",
    "starlette": "starlette",
}

EXIT_MISSING = 2  # pakr.proto.exitcodes.ExitCode.USAGE: a configuration problem


def missing_message(error: ModuleNotFoundError) -> str | None:
    """The one-line message for ``error`` if a server package is missing, else ``None``."""
    top = (error.name or "").partition(".")[0]
    if top not in SERVER_MODULES:
        return None
    return (
        f"pakr: this command needs the server packages ({SERVER_MODULES[top]} is not"
        f" installed; `pip install pakr` is the SDK alone): {INSTALL_HINT}"
    )


def explain_missing(error: ModuleNotFoundError) -> NoReturn:
    """Exit with :func:`missing_message` on stderr, or re-raise ``error`` if it is not about a
    server package (a bug then, not an install choice)."""
    message = missing_message(error)
    if message is None:
        raise error
    print(message, file=sys.stderr)
    sys.exit(EXIT_MISSING)
