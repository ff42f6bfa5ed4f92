"""Reviewers' sessions: sign-in with the console's secret, signed cookies, CSRF tokens.

A session is a small JSON payload (reviewer, CSRF token, expiry) signed with
HMAC-SHA256 under a key derived from ``VITRINE_CONSOLE_SECRET``: the console
keeps no session store, so a restart keeps people signed in and two replicas
share sessions. The cookie is HttpOnly, SameSite=Strict and Secure unless the
console serves plain HTTP on 127.0.0.1. Every POST carries the session's CSRF
token (a form field or the ``X-CSRF-Token`` header).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from streams.settings import ConsoleSettings

__all__ = [
    "COOKIE",
    "ConsoleConfigError",
    "Session",
    "Sessions",
    "SignInThrottle",
    "console_secret",
    "valid_reviewer",
]

logger = logging.getLogger(__name__)

COOKIE = "vitrine_console"
_REVIEWER = re.compile(r"^[\w.@-]{1,64}$")


class ConsoleConfigError(RuntimeError):
    """The console's settings do not allow it to start safely."""


def console_secret(cfg: ConsoleSettings) -> str:
    """The sign-in secret; a made-up one only in dev mode on 127.0.0.1, else refuse."""
    secret = cfg.secret.get_secret_value()
    if secret:
        if len(secret) < 12 and not cfg.dev:
            raise ConsoleConfigError(
                "VITRINE_CONSOLE_SECRET is shorter than 12 characters; use a long random one"
            )
        return secret
    if cfg.dev and cfg.host == "127.0.0.1":
        made = secrets.token_urlsafe(12)
        logger.warning("dev mode: no VITRINE_CONSOLE_SECRET, sign in with %s", made)
        return made
    raise ConsoleConfigError(
        f"the console needs a secret: set VITRINE_CONSOLE_SECRET (host={cfg.host}); "
        "only VITRINE_CONSOLE_DEV=true with VITRINE_CONSOLE_HOST=127.0.0.1 runs without one"
    )


def valid_reviewer(name: str) -> bool:
    """A reviewer name as it goes on the record: 1-64 letters, digits, ``.@_-``."""
    return bool(_REVIEWER.match(name))


@dataclass(frozen=True)
class Session:
    """A browser's session: its reviewer once signed in, and its CSRF token."""

    reviewer: str | None
    csrf: str
    expires_at_s: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and reads signed session cookies."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret.encode()
        self._key = hmac.new(self._secret, b"vitrine-console-session", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def check_secret(self, given: str) -> bool:
        """Whether ``given`` is the sign-in secret (in constant time)."""
        return hmac.compare_digest(given.encode(), self._secret)

    def issue(self, reviewer: str | None) -> tuple[str, Session]:
        """A new session (with a fresh CSRF token) and its cookie value."""
        session = Session(reviewer, secrets.token_urlsafe(24), int(time.time()) + self.ttl_s)
        payload = json.dumps(
            {"r": session.reviewer, "c": session.csrf, "e": session.expires_at_s},
            separators=(",", ":"),
        ).encode()
        sig = hmac.new(self._key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(sig)}", session

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie value; None if absent, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        body, _, sig = cookie.partition(".")
        try:
            payload, given = _unb64(body), _unb64(sig)
        except ValueError:
            return None
        if not hmac.compare_digest(hmac.new(self._key, payload, hashlib.sha256).digest(), given):
            return None
        try:
            data = json.loads(payload)
            session = Session(data["r"], str(data["c"]), int(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at_s > time.time() else None

    @staticmethod
    def csrf_ok(session: Session, token: str | None) -> bool:
        """Whether a POST's token is its session's."""
        return token is not None and hmac.compare_digest(token.encode(), session.csrf.encode())


class SignInThrottle:
    """Failed sign-ins per client address in a sliding window; past the limit, wait.

    The secret is shared by every reviewer, so guessing it is the attack: each
    address gets ``max_failures`` wrong guesses per ``window_s``. A success
    clears the address. Addresses are kept in memory, the least recently
    failed dropped past ``max_addresses``, so a flood of addresses costs a
    bounded amount of memory (and gets each of them only ``max_failures``).
    Behind a proxy every reviewer shares its address: size the limit for that,
    or have the proxy limit sign-ins itself.
    """

    def __init__(self, max_failures: int, window_s: float, max_addresses: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def wait_s(self, address: str, now: float) -> float:
        """Seconds ``address`` must wait before it may try again (0: it may now)."""
        times = self._recent(address, now)
        if len(times) < self.max_failures:
            return 0.0
        return times[0] + self.window_s - now

    def failed(self, address: str, now: float) -> None:
        """Count a wrong name or secret from ``address``."""
        times = self._recent(address, now)
        times.append(now)
        self._failures[address] = times
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        """Forget the failures of ``address``."""
        self._failures.pop(address, None)
