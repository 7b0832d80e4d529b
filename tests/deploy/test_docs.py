"""The docs stay true to the code: links resolve, protocol.md names every label and function
that exists (and only those), and every ``pakr`` command line in a shell block parses."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from pakr.coordinator.cli import build_parser
from pakr.node.store import sealing
from pakr.proto import kdf, manifest

ROOT = Path(__file__).resolve().parents[2]
OWNED = [
    ROOT / "docs" / "README.md",
    ROOT / "docs" / "quickstart.md",
    ROOT / "docs" / "operator.md",
    ROOT / "docs" / "protocol.md",
    ROOT / "deploy" / "README.md",
]


@pytest.mark.parametrize("page", OWNED, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_protocol_page_names_every_label() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    labels = [v for k, v in vars(kdf).items() if k.startswith("LABEL_")]
    assert len(labels) >= 9
    labels += [manifest.SIGNATURE_CONTEXT.rstrip(b"\0"), sealing.LABEL_NODE_SEAL]
    for label in labels:
        assert f'"{label.decode()}' in text, label
    # ... and no label the code does not have.
    for named in set(re.findall(r'"(pakr/v1/[a-z0-9-]+)', text)):
        assert named.encode() in labels, named


def test_protocol_page_functions_and_modules_exist() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text.split("## Derived values", 1)[1].split("## Who holds what", 1)[0]
    names = re.findall(r"\| `([a-z_.]+)`(?:, `([a-z_.]+)`)? \|$", section, flags=re.MULTILINE)
    flat = [n for pair in names for n in pair if n]
    assert len(flat) >= 12
    for name in flat:
        module_name, _, attr = name.rpartition(".")
        module = importlib.import_module(f"pakr.proto.{module_name or 'kdf'}")
        assert hasattr(module, attr), name
    for path in re.findall(r"`((?:client|node|proto|coordinator)/[\w/.]+)`", text):
        assert (ROOT / path).exists(), path


def _shell_commands(page: Path) -> list[list[str]]:
    commands: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", page.read_text(), flags=re.DOTALL):
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.split("#", 1)[0].strip()
            line = line.replace("$PAKR_ARGS", "--manifest m.json --token-key k.key")
            match = re.match(r"^(?:\.venv/bin/)?pakr (.+)$", line)
            if match and "..." not in line:
                commands.append(shlex.split(match.group(1)))
    return commands


@pytest.mark.parametrize("page", OWNED, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_commands_parse(page: Path) -> None:
    for argv in _shell_commands(page):
        args = build_parser().parse_args(argv)
        assert callable(getattr(args, "func", None)), argv


def test_quickstart_has_commands() -> None:
    assert len(_shell_commands(ROOT / "docs" / "quickstart.md")) >= 10


def test_exit_codes_are_listed_once_and_match_the_source() -> None:
    """operator.md's table is the docs' one list of exit codes, equal to what ``--help``
    prints (``EXIT_CODES_HELP``, from the same enum); no other page repeats the list."""
    from pakr.proto.exitcodes import EXIT_CODES_HELP, ExitCode

    text = (ROOT / "docs" / "operator.md").read_text()
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| ([^|]+?) \|", section, flags=re.MULTILINE))
    helped = dict(re.findall(r"(\d+) ([^,.]+(?:\([^)]*\))?)", EXIT_CODES_HELP.split(": ", 1)[1]))
    assert {int(code) for code in rows} == {int(code) for code in ExitCode}
    assert rows == helped
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "operator.md":
            assert "3 invalid password" not in page.read_text(), f"{page.name} repeats the list"


def test_dotted_names_in_the_docs_exist() -> None:
    """Every `pakr.module.name` a page names resolves (modules move: the docs follow)."""
    found = 0
    for page in sorted((ROOT / "docs").glob("*.md")):
        for name in sorted(set(re.findall(r"`(pakr(?:\.[A-Za-z_]\w*)+)", page.read_text()))):
            if name.startswith("pakr.v1."):
                continue  # a protobuf package, not a Python one
            found += 1
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    obj: object = importlib.import_module(".".join(parts[:cut]))
                except ImportError:
                    continue
                break
            for attr in parts[cut:]:
                assert hasattr(obj, attr), f"{page.name} names {name}, which does not exist"
                obj = getattr(obj, attr)
    assert found >= 10


def test_every_rpc_field_is_in_the_specs_wire_table() -> None:
    """docs/protocol.md §6 has a row per RPC of node.proto naming every field of its request
    and reply, so a field added to the wire without a line in the spec fails here."""
    proto = (ROOT / "proto" / "pakr" / "v1" / "node.proto").read_text()
    spec = (ROOT / "docs" / "protocol.md").read_text()
    messages = dict(re.findall(r"^message (\w+) \{([^}]*)\}", proto, flags=re.MULTILINE))
    rpcs = re.findall(r"rpc (\w+)\((\w+)\) returns \((\w+)\)", proto)
    assert len(rpcs) >= 10
    for rpc, request, reply in rpcs:
        rows = re.findall(rf"^\| {rpc} \|.*$", spec, flags=re.MULTILINE)
        assert len(rows) == 1, f"no row for {rpc} in the spec's wire table"
        for message in (request, reply):
            for field in re.findall(
                r"^\s+(?:repeated )?\w+ (\w+) = \d+;", messages[message], flags=re.MULTILINE
            ):
                if field != "header":
                    assert f"`{field}`" in rows[0], f"{rpc}: {message}.{field} not in the spec"
