"""MkDocs hook: links from docs/ into the rest of the repository.

The pages are written to read well on the repository host, so they link to code and other
files with relative paths (``../proto/kdf.py``). In the built site those would be broken:
this hook checks that each such target exists in the repository (a missing one is a
warning, which ``mkdocs build --strict`` turns into a failure) and points the link at the
file in the source repository instead.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.plugins.pakr_links")

# ](../path) or ](../path#anchor), outside code spans is good enough for these pages.
_LINK = re.compile(r"\]\((\.\./[^)\s#]+)(#[^)\s]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    root = docs_dir.parent
    source = (docs_dir / page.file.src_path).parent
    repo = str(config.get("repo_url") or "").rstrip("/")

    def rewrite(match: re.Match[str]) -> str:
        target = (source / match.group(1)).resolve()
        try:
            relative = target.relative_to(root)
        except ValueError:
            log.warning("%s links outside the repository: %s", page.file.src_path, match[1])
            return match.group(0)
        if not target.exists():
            log.warning("%s links to a missing file: %s", page.file.src_path, match[1])
            return match.group(0)
        kind = "tree" if target.is_dir() else "blob"
        return f"]({repo}/{kind}/main/{relative.as_posix()}{match.group(2) or ''})"

    return _LINK.sub(rewrite, markdown)
