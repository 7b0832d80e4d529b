"""The user commands' pieces that need no cluster: parsing, passwords, tokens, progress."""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import pytest

from pakr.coordinator.cli import build_parser, main, session
from pakr.coordinator.cli import user as user_cli
from pakr.proto.errors import ConfigError, InvalidAuth
from pakr.proto.tokens import TenantKey, verify_token


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "command", ["register", "recover", "change-password", "delete", "status", "token"]
)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: pakr " + command in capsys.readouterr().out


def test_password_is_never_an_argument() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["recover", "--manifest", "m", "--user", "u", "--password", "x"])


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert main([]) == 2
    key = tmp_path / "k.key"
    TenantKey.generate("acme").save(key)
    args = ["register", "--manifest", str(tmp_path / "none.json"), "--user", "u"]
    args += ["--token-key", str(key), "--secret-file", str(tmp_path / "no"), "--password-stdin"]
    assert main(args) == 2  # unreadable secret file, before anything else


def test_secret_hex_on_the_command_line_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "k.key"
    TenantKey.generate("acme").save(key)
    args = ["register", "--manifest", str(tmp_path / "none.json"), "--user", "u"]
    args += ["--token-key", str(key), "--secret-hex", "00ff", "--password-stdin"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--secret-stdin" in err and "00ff" not in err


def test_secret_from_stdin_then_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    base = dict(secret_file=None, secret_hex=None, generate=None, secret_stdin=True)
    lines = ["0aff", "pw", "pw"]
    assert user_cli._read_secret(_args(**base), lines) == (b"\n\xff", False)
    passwords = session.Passwords(_args(password_stdin=True), lines)
    assert passwords.ask("New password: ", confirm=True) == "pw"
    with pytest.raises(ConfigError, match="not valid hex"):
        user_cli._read_secret(_args(**base), ["zz"])
    with pytest.raises(ConfigError, match="empty"):
        user_cli._read_secret(_args(**base), [])


def _args(**kwargs: object) -> argparse.Namespace:
    return argparse.Namespace(**kwargs)


def test_passwords_from_stdin_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("old pw\nnew pw\n"))
    passwords = session.Passwords(_args(password_stdin=True))
    assert passwords.ask("a") == "old pw"
    assert passwords.ask("b", confirm=True) == "new pw"
    with pytest.raises(ConfigError, match="not enough lines"):
        passwords.ask("c")


def test_prompt_needs_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(ConfigError, match="--password-stdin"):
        session.Passwords(_args(password_stdin=False))


def test_prompted_passwords_must_match(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", FakeTTY())
    answers = iter(["one", "two", "same", "same"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    passwords = session.Passwords(_args(password_stdin=False))
    with pytest.raises(ConfigError, match="differ"):
        passwords.ask("New password: ", confirm=True)
    assert passwords.ask("New password: ", confirm=True) == "same"


def test_secret_sources(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    path.write_bytes(b"\x00\x01")
    base = dict(secret_file=None, secret_hex=None, generate=None)
    assert user_cli._read_secret(_args(**{**base, "secret_file": path})) == (b"\x00\x01", False)
    with pytest.raises(ConfigError, match="refused"):
        user_cli._read_secret(_args(**{**base, "secret_hex": "0aff"}))
    secret, generated = user_cli._read_secret(_args(**{**base, "generate": 16}))
    assert len(secret) == 16 and generated
    with pytest.raises(ConfigError, match=r"1\.\.128"):
        user_cli._read_secret(_args(**{**base, "generate": 129}))


async def test_token_cmd_provider(tmp_path: Path) -> None:
    key = TenantKey.generate("acme")
    key_path = tmp_path / "acme.key"
    key.save(key_path)
    script = tmp_path / "mint.py"
    script.write_text(
        "import os, sys\n"
        "from pakr.proto.tokens import TenantKey, issue_token\n"
        "assert os.environ['PAKR_TENANT'] == 'acme'\n"
        "print(issue_token(TenantKey.load(sys.argv[1]), user_id=os.environ['PAKR_USER_ID'],"
        " audience=sys.argv[2]))\n"
    )
    provider = session.CommandTokenProvider(
        f"{sys.executable} {script} {key_path} {{audience}}", "acme"
    )
    audience = "ab" * 16
    token = await provider("alice", audience)
    claims = verify_token(token, keys={key.kid: key.public_key}, audience=audience, now=time.time())
    assert claims.user_id == "alice"
    failing = tmp_path / "fail.py"
    failing.write_text("import sys\nprint('nope', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(InvalidAuth, match="exited with 3: nope"):
        await session.CommandTokenProvider(f"{sys.executable} {failing}", "acme")("a", audience)
    with pytest.raises(InvalidAuth, match="could not run"):
        await session.CommandTokenProvider("/nonexistent/cmd", "acme")("a", audience)
    with pytest.raises(ConfigError):
        session.CommandTokenProvider("", "acme")


def test_progress_spins_only_on_a_terminal() -> None:
    tty = FakeTTY()
    with session.Progress("recovering", stream=tty) as progress:
        progress.phase("argon2", 0.03)
        time.sleep(0.35)
    assert "recovering: argon2 done (30 ms)" in tty.getvalue()
    piped = io.StringIO()
    with session.Progress("recovering", stream=piped):
        time.sleep(0.15)
    assert piped.getvalue() == ""


def test_token_issue_for_one_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = TenantKey.generate("acme")
    key_path = tmp_path / "acme.key"
    key.save(key_path)
    audience = "cd" * 16
    args = ["token", "issue", "--tenant-key", str(key_path), "--user", "bob"]
    assert main([*args, "--audience", audience, "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()
    claims = verify_token(token, keys={key.kid: key.public_key}, audience=audience, now=time.time())
    assert (claims.user_id, claims.exp - claims.iat) == ("bob", 60)
    assert main([*args, "--audience", "not-hex"]) == 2
    assert main(args) == 2  # neither --audience nor --manifest


def test_operator_pin_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pakr.coordinator.cli import pins
    from pakr.proto.manifest import INSECURE_UNPINNED, OperatorKey

    monkeypatch.setenv("PAKR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PAKR_OPERATOR_KEY", raising=False)
    manifest = tmp_path / "m.json"
    flag, env, recorded = (OperatorKey.generate().public_key_text for _ in range(3))

    def pin(**kw: object) -> object:
        base = {"manifest": manifest, "operator_key": None, "insecure_unpinned": False}
        return pins.resolve_pin(_args(**{**base, **kw}))

    with pytest.raises(ConfigError, match="not pinned"):
        pin()
    pins.record_pin(manifest, recorded)
    assert pin() == recorded
    assert (tmp_path / "state" / pins.PINS_FILE).stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("PAKR_OPERATOR_KEY", env)
    assert pin() == env
    assert pin(operator_key=flag) == flag
    assert pin(insecure_unpinned=True) is INSECURE_UNPINNED
    with pytest.raises(ConfigError):
        pins.record_pin(manifest, "not a key")
