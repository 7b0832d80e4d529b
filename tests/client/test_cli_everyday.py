"""Issue 17 without a cluster: the conventions every ``pakr`` command shares.

``--version``, "did you mean", help text on every command and flag, exit codes from one
table, the environment and profile defaults, shell completion.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import subprocess
import sys
from pathlib import Path

import pytest

import pakr
from pakr.coordinator import cli, settings
from pakr.coordinator.cli import build_parser, leaf_commands, main
from pakr.coordinator.completion import bash_script
from pakr.proto import errors
from pakr.proto.exitcodes import EXIT_CODES_HELP, ExitCode, exit_code_for
from pakr.proto.tokens import TenantKey


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_version_flag_and_module_attribute(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--version"], capsys)
    installed = importlib.metadata.version("pakr")
    assert (code, out.strip()) == (0, f"pakr {installed}")
    assert pakr.__version__ == installed


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (["recovr"], "pakr: error: unknown command 'recovr'; did you mean recover?"),
        (
            ["cluster", "stats"],
            "pakr cluster: error: unknown command 'stats'; did you mean status?",
        ),
        (["zzzz"], "pakr: error: unknown command 'zzzz'; see `pakr --help`"),
    ],
)
def test_mistyped_command_suggests(
    argv: list[str], first_line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert err.splitlines()[1] == first_line  # after the usage line


def test_every_command_and_flag_is_documented() -> None:
    parser = build_parser()
    leaves = list(leaf_commands(parser))
    assert len(leaves) >= 29
    for words, leaf in leaves:
        name = " ".join(words)
        assert leaf.description, f"pakr {name} has no description"
        assert "example" in (leaf.epilog or ""), f"pakr {name} has no example"
        assert EXIT_CODES_HELP in (leaf.epilog or ""), f"pakr {name} lists no exit codes"
        for action in leaf._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            what = f"pakr {name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, f"{what} has no help"
            if action.option_strings and action.default not in (None, False, [], "==SUPPRESS=="):
                help_text = cli.HelpFormatter("pakr")._get_help_string(action) or ""
                assert "default" in help_text, f"{what} does not say its default"
    for words in (("cluster", "down"), ("node", "serve"), ("coordinator", "health")):
        assert words in dict(leaf_commands(parser))


def test_help_shows_units_defaults_example_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(["manifest", "create", "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())
    assert "days until the manifest expires (clients then refuse it) (default: 365.0)" in text
    assert "Argon2id memory in KiB (default: 65536; 19456 with --dev)" in text
    assert "example: pakr manifest create --operator-key" in text
    assert "Exit codes: 0 ok, 1 failed (other error), 2 usage or config error" in text


def test_exit_codes_come_from_one_table() -> None:
    assert exit_code_for(errors.InvalidPassword(1)) == 3
    assert exit_code_for(errors.NotRegistered()) == 4
    assert exit_code_for(errors.ClusterUnavailable({})) == 5
    assert exit_code_for(errors.Conflict("c")) == 5
    assert exit_code_for(errors.InvalidAuth("a")) == 6
    assert exit_code_for(errors.ProtocolError([], "p")) == 7
    assert exit_code_for(errors.ConfigError("c")) == 2
    assert exit_code_for(errors.AlreadyRegistered("a")) == 2
    assert exit_code_for(errors.PakrError("other")) == 1
    for code in ExitCode:
        assert f"{int(code)} " in EXIT_CODES_HELP
    # The CLI modules define no exit numbers of their own.
    root = Path(cli.__file__).parent
    for module in ("user_cli.py", "admin_cli.py", "audit_cli.py", "cli.py"):
        source = (root / module).read_text()
        assert "return 3" not in source and "return 4" not in source, module


def test_everyday_flags_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable in (*settings.ENV.values(), "PAKR_PROFILE", "PAKR_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    code, _, err = _run(["status", "--user", "u"], capsys)
    assert code == 2
    assert err.splitlines()[0] == (
        "pakr: --manifest is required (or set PAKR_MANIFEST, or manifest in a --profile)"
    )
    monkeypatch.setenv("PAKR_MANIFEST", str(tmp_path / "m.json"))
    code, _, err = _run(["status", "--user", "u"], capsys)
    assert code == 2 and err.startswith("pakr: no token source: give --token-key FILE")
    key = tmp_path / "acme.key"
    TenantKey.generate("acme").save(key)
    monkeypatch.setenv("PAKR_TOKEN_KEY", str(key))
    monkeypatch.setenv("PAKR_TENANT", "acme")
    args = build_parser().parse_args(["status", "--user", "u"])
    settings.apply_settings(args)
    assert (args.manifest, args.token_key, args.tenant) == (tmp_path / "m.json", key, "acme")
    # A flag wins, and a token flag is never mixed with the other kind from the environment.
    monkeypatch.setenv("PAKR_TOKEN_CMD", "mint {user}")
    args = build_parser().parse_args(["status", "--user", "u", "--token-cmd", "x"])
    settings.apply_settings(args)
    assert (args.token_cmd, args.token_key) == ("x", None)
    args = build_parser().parse_args(["status", "--user", "u"])
    with pytest.raises(errors.ConfigError, match="both a token key and a token command"):
        settings.apply_settings(args)
    # The SDK then reads the (missing) manifest: the user is told which file.
    monkeypatch.delenv("PAKR_TOKEN_CMD")
    code, _, err = _run(["status", "--user", "u", "--insecure-unpinned"], capsys)
    assert code == 2 and "m.json" in err.splitlines()[0]


def test_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (*settings.ENV.values(), "PAKR_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    config = tmp_path / "profiles.toml"
    config.write_text(
        '[dev]\nmanifest = "cluster/manifest.json"\ntoken_key = "cluster/tenants/dev.key"\n'
        'tenant = "dev"\n[odd]\nwhat = "x"\n'
    )
    monkeypatch.setenv("PAKR_CONFIG", str(config))
    args = build_parser().parse_args(["--profile", "dev", "recover", "--user", "u"])
    settings.apply_settings(args)
    assert args.manifest == tmp_path / "cluster/manifest.json"
    assert args.token_key == tmp_path / "cluster/tenants/dev.key"
    monkeypatch.setenv("PAKR_MANIFEST", "/elsewhere.json")  # the environment beats a profile
    monkeypatch.setenv("PAKR_PROFILE", "dev")
    args = build_parser().parse_args(["recover", "--user", "u"])
    settings.apply_settings(args)
    assert args.manifest == Path("/elsewhere.json") and args.tenant == "dev"
    with pytest.raises(errors.ConfigError, match=r"has no profile \[nope\] \(profiles: dev, odd\)"):
        settings.apply_settings(
            build_parser().parse_args(["--profile", "nope", "delete", "--user", "u"])
        )
    with pytest.raises(errors.ConfigError, match=r"unknown key\(s\) what"):
        settings.apply_settings(
            build_parser().parse_args(["--profile", "odd", "delete", "--user", "u"])
        )


def _complete(script: str, words: list[str]) -> list[str]:
    line = " ".join(f"'{w}'" for w in words)
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _pakr;"
        ' printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion(capsys: pytest.CaptureFixture[str]) -> None:
    code, script, _ = _run(["completion", "bash"], capsys)
    assert code == 0 and "complete -o default -F _pakr pakr" in script
    assert _complete(script, ["pakr", "clu"]) == ["cluster"]
    assert sorted(_complete(script, ["pakr", "cluster", "st"])) == ["start-node", "status"]
    assert "--base-port" in _complete(script, ["pakr", "cluster", "up", "--b"])
    assert _complete(script, ["pakr", "recover", "--manifest", "x", "--pass"]) == [
        "--password-stdin"
    ]
    code, zsh, _ = _run(["completion", "zsh"], capsys)
    assert "bashcompinit" in zsh and bash_script(build_parser()) in zsh


def test_ctrl_c_before_anything_prints_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted() -> argparse.ArgumentParser:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert main(["status"]) == 130
    assert err.getvalue() == "\npakr: interrupted\n"


def test_a_replaced_recovery_attempt_is_a_retryable_conflict() -> None:
    from pakr._refusals import classify
    from pakr.proto.errors import ErrorKind, NodeRefusal
    from pakr.proto.messages import NodeRef

    node = NodeRef(node_id=bytes(16), index=1)
    stale = NodeRefusal(ErrorKind.STALE_ATTEMPT, "no open Recover2 attempt with this id")
    mapped = classify(node, stale)
    assert isinstance(mapped, errors.Conflict)
    assert str(mapped) == (
        f"another recovery of this user ran at the same time ({node.name}); try again"
    )
    assert exit_code_for(mapped) == ExitCode.UNAVAILABLE
