"""One output convention for every ``pakr`` command.

The result goes to stdout: JSON (one document) when ``--json`` is given or stdout is not a
terminal, so scripts and pipes always get something to parse; human-readable lines on a
terminal. Progress, warnings and errors go to stderr. (``recover`` and ``register
--generate`` print the secret itself unless ``--json``: that output *is* their result.)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any


def wants_json(args: argparse.Namespace) -> bool:
    """Whether this command's result should be printed as JSON."""
    return bool(getattr(args, "json", False)) or not sys.stdout.isatty()


def emit(
    args: argparse.Namespace,
    data: Mapping[str, Any] | list[Any],
    human: str | Callable[[], str] | None,
    *,
    indent: int | None = None,
) -> None:
    """Print ``data`` as JSON, or ``human`` (text, or a function making it) as text.

    ``human=None``: the command says all it has to say on stderr when on a terminal.
    """
    if wants_json(args):
        print(json.dumps(data, indent=indent), flush=True)
    elif human is not None:
        print(human() if callable(human) else human, flush=True)
