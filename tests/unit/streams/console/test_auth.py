"""Sessions are signed and expire; the secret rule refuses an open console."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from streams.console.auth import ConsoleConfigError, Sessions, console_secret, valid_reviewer
from streams.settings import ConsoleSettings


def test_a_session_reads_back_and_a_forged_one_does_not() -> None:
    sessions = Sessions("s" * 20, ttl_s=60)
    cookie, session = sessions.issue("rev-1")
    assert sessions.read(cookie) == session
    body, _, sig = cookie.partition(".")
    assert sessions.read(body[:-2] + "xx." + sig) is None
    assert Sessions("t" * 20, ttl_s=60).read(cookie) is None, "another secret"
    assert sessions.read(None) is None
    assert sessions.read("garbage") is None


def test_an_expired_session_is_refused() -> None:
    sessions = Sessions("s" * 20, ttl_s=-1)
    cookie, _ = sessions.issue("rev-1")
    assert sessions.read(cookie) is None


def test_csrf_token_must_be_the_sessions() -> None:
    sessions = Sessions("s" * 20, ttl_s=60)
    _, session = sessions.issue("rev-1")
    assert Sessions.csrf_ok(session, session.csrf)
    assert not Sessions.csrf_ok(session, None)
    assert not Sessions.csrf_ok(session, session.csrf + "x")


def test_no_secret_is_refused_unless_dev_on_loopback() -> None:
    with pytest.raises(ConsoleConfigError, match="VITRINE_CONSOLE_SECRET"):
        console_secret(ConsoleSettings(host="0.0.0.0"))
    with pytest.raises(ConsoleConfigError):
        console_secret(ConsoleSettings(host="127.0.0.1"))
    with pytest.raises(ConsoleConfigError):
        console_secret(ConsoleSettings(host="0.0.0.0", dev=True))
    assert len(console_secret(ConsoleSettings(host="127.0.0.1", dev=True))) >= 12
    with pytest.raises(ConsoleConfigError, match="shorter"):
        console_secret(ConsoleSettings(secret=SecretStr("short")))
    assert console_secret(ConsoleSettings(secret=SecretStr("x" * 16))) == "x" * 16


def test_reviewer_names() -> None:
    assert valid_reviewer("rev-7@shop.example")
    assert not valid_reviewer("")
    assert not valid_reviewer("<script>")
