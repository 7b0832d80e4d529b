"""The ``pakr`` console script's entry: quiet on Ctrl-C from the very first instruction.

Importing the CLI takes a moment; a Ctrl-C in that window would otherwise print Python's
traceback of whatever module was loading. Until the CLI is loaded, SIGINT ends the process
with one line and exit 130; then :func:`pakr.coordinator.cli.main` handles it (as
``KeyboardInterrupt``, so commands clean up).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import NoReturn


def _interrupted_while_loading(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"\npakr: interrupted\n")
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted_while_loading)


def run() -> NoReturn:
    """Load the CLI, then run it with Python's usual KeyboardInterrupt on SIGINT.

    In a base install (``pip install pakr``, the SDK alone) the server packages are missing:
    one line says to install ``pakr[node]`` instead of a traceback.
    """
    try:
        from pakr.coordinator.cli import main

        signal.signal(signal.SIGINT, signal.default_int_handler)
        code = main()
    except ModuleNotFoundError as missing:
        from pakr.node.extras import explain_missing

        explain_missing(missing)
    sys.exit(code)
