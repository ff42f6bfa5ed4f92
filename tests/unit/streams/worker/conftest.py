"""A real ``redis-server`` for the worker's unit tests that need Redis, started once per session.

On a free local port, without persistence; each test keys under its own
prefix (:func:`cache`), so tests never see each other's data.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from streams.tools.stack import free_ports
from streams.worker.cache import LabelCache
from tests.polling import wait_until


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    (port,) = free_ports(1)
    workdir = tmp_path_factory.mktemp("redis")
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [binary, *args, "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: proc.poll() is not None or _pings(url), "redis-server to answer")
        assert proc.poll() is None, f"redis-server exited with {proc.returncode}"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def new_cache(redis_url: str, prefix: str) -> Callable[..., LabelCache]:
    """Builds a :class:`LabelCache` on the session's Redis under this test's prefix.

    Build it inside the test's event loop: its connections belong to that loop.
    """

    def build(url: str = redis_url, **kw: Any) -> LabelCache:
        return LabelCache(url, ttl_s=600, timeout_ms=2000, prefix=prefix, **kw)

    return build


@pytest.fixture
def down_url() -> str:
    """A Redis URL where nothing listens: Redis is down."""
    (port,) = free_ports(1)
    return f"redis://127.0.0.1:{port}/0"
