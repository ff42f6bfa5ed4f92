"""Sessions are signed and expire; the secret rule refuses an open console."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from streams.console.auth import (
    ConsoleConfigError,
    Sessions,
    SignInThrottle,
    console_secret,
    valid_reviewer,
)
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


def test_the_throttle_allows_max_failures_per_window_and_per_address() -> None:
    t = SignInThrottle(max_failures=3, window_s=60)
    for at in (0.0, 1.0, 2.0):
        assert t.wait_s("10.0.0.1", at) == 0
        t.failed("10.0.0.1", at)
    assert t.wait_s("10.0.0.1", 3.0) == 57.0  # until the first failure leaves the window
    assert t.wait_s("10.0.0.2", 3.0) == 0, "another address is not held back"
    assert t.wait_s("10.0.0.1", 60.0) == 0, "the first failure has left the window"
    t.failed("10.0.0.1", 60.0)
    assert t.wait_s("10.0.0.1", 60.5) == 0.5
    t.succeeded("10.0.0.1")
    assert t.wait_s("10.0.0.1", 60.5) == 0


def test_the_throttle_keeps_a_bounded_number_of_addresses() -> None:
    t = SignInThrottle(max_failures=1, window_s=60, max_addresses=100)
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(t._failures) == 100
    assert t.wait_s("10.0.3.231", 1.0) > 0, "the most recent addresses are kept"
