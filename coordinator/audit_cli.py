"""``pakr audit``: read the nodes' audit logs (a whole tenant's, or one user's).

A thin shell over :meth:`pakr.Client.audit`: tokens of scope ``audit`` come from the
tenant key (``--token-key``) or ``--token-cmd`` (which sees ``{scope}``/``PAKR_SCOPE`` =
``audit``). One page per call (``--limit`` events, ``--cursor`` to continue), or every page
with ``--all``. Human-readable table on a terminal, JSON otherwise or with ``--json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pakr.coordinator.output import emit
from pakr.coordinator.user_cli import EXAMPLE_FLAGS, _command, _token_setup, client_for
from pakr.proto.errors import ConfigError

if TYPE_CHECKING:
    from pakr import AuditEvent

MAX_ALL_PAGES = 1000  # --all stops here (1,000 pages of up to 1,000 events)


def add_commands(subparsers: Any) -> None:
    """Add ``pakr audit``."""
    audit = _command(
        subparsers,
        "audit",
        "show the audit log: registrations, guesses spent, lockouts, deletions, refusals",
        "Read every node's audit log for the tenant (or one --user) and print the events "
        "oldest first: registered, guess_used, unlock_failed, share_released, locked, "
        "deleted, refused. Needs audit-scope tokens. Prints a cursor to continue from.",
        "--user alice --limit 20",
        password=False,
        user_required=False,
    )
    audit.epilog = (audit.epilog or "") + (
        f"\n\nmore examples:\n  pakr audit {EXAMPLE_FLAGS} --all --json"
        f"\n  pakr audit {EXAMPLE_FLAGS} --cursor 1:40,2:38,3:41"
    )
    audit.add_argument("--user", metavar="U", help="one user's events (default: the tenant's)")
    audit.add_argument(
        "--limit", type=int, default=100, metavar="N", help="events per page, 1..1000"
    )
    audit.add_argument("--cursor", metavar="C", help="continue after a page (its cursor)")
    audit.add_argument("--all", action="store_true", help="read every page, not just one")
    audit.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise ConfigError("--limit must be 1..1000")
    events: list[AuditEvent] = []
    unreachable: dict[str, str] = {}
    _, provider = _token_setup(args, "audit")
    with client_for(args, "reading the audit log", scope="audit") as (client, _):
        cursor = args.cursor
        for _ in range(MAX_ALL_PAGES):
            page = client.audit(args.user, cursor=cursor, limit=args.limit, token_provider=provider)
            events.extend(page.events)
            unreachable |= page.unreachable
            cursor = page.cursor
            if not (args.all and page.more):
                break
    more = page.more and not args.all
    data = {
        "events": [asdict(e) for e in events],
        "cursor": cursor,
        "more": more,
        "unreachable": unreachable,
    }
    emit(args, data, lambda: _table(events, cursor, more), indent=None)
    for node, why in sorted(unreachable.items()):
        print(f"pakr: {node} did not answer ({why}); its events are missing", file=sys.stderr)
    return 0


def _table(events: list[AuditEvent], cursor: str, more: bool) -> str:
    lines = [f"{'time (UTC)':<20} {'node':<16} {'user':<20} {'event':<15} outcome"]
    for e in events:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.time))
        lines.append(f"{stamp:<20} {e.node:<16} {e.user_id:<20} {e.op:<15} {e.outcome}")
    if not events:
        lines.append("(no events)")
    lines.append(f"cursor: {cursor}" + ("  (more: pass --cursor to continue)" if more else ""))
    return "\n".join(lines)
