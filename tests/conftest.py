"""Real Kafka + Redis for the integration suite, started once per test session.

The stack runs on free ports under ``~/.cache/vitrine/stack/test-<pid>`` (the
Kafka jars cache is shared), so it never collides with a stack a person
started by hand. To use an existing stack instead, set
``VITRINE_TEST_KAFKA_PORT`` and ``VITRINE_TEST_REDIS_PORT``.

Every test gets fresh uuid-suffixed topic names and its own Faust app id
(hence its own consumer group), so tests never see each other's data.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.settings import Settings
from streams.stack import Stack, create_topics, free_ports

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalStack:
    stack: Stack
    settings: Settings

    @property
    def bootstrap(self) -> str:
        return self.stack.bootstrap_servers

    @property
    def redis_url(self) -> str:
        return self.stack.redis_url


@pytest.fixture(scope="session")
def kafka_stack() -> Iterator[LocalStack]:
    kport = os.environ.get("VITRINE_TEST_KAFKA_PORT")
    rport = os.environ.get("VITRINE_TEST_REDIS_PORT")
    if kport and rport:
        settings = Settings(kafka_port=int(kport), redis_port=int(rport))
        stack = Stack(settings, name=f"k{kport}-r{rport}")
        yield LocalStack(stack, settings)
        return
    kp, cp, rp = free_ports(3)
    settings = Settings(kafka_port=kp, kafka_controller_port=cp, redis_port=rp)
    stack = Stack(settings, name=f"test-{os.getpid()}")
    shutil.rmtree(stack.root, ignore_errors=True)
    stack.up(timeout_s=240, create_topics=False)
    try:
        yield LocalStack(stack, settings)
    finally:
        stack.down()
        shutil.rmtree(stack.root, ignore_errors=True)


@dataclass
class Topics:
    """One test's topic names, app id and worker environment."""

    suffix: str
    bootstrap: str
    redis_url: str
    partitions: int = 2
    names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        base = {
            "product_images": "product-images",
            "orders": "orders",
            "product_labels": "product-labels",
            "orders_enriched": "orders-enriched",
            "category_sales": "category-sales",
            "product_images_dlq": "product-images.dlq",
            "orders_dlq": "orders.dlq",
        }
        self.names = {k: f"{v}-{self.suffix}" for k, v in base.items()}

    def __getattr__(self, item: str) -> str:
        try:
            return self.__dict__["names"][item]
        except KeyError:
            raise AttributeError(item) from None

    @property
    def app_id(self) -> str:
        return f"vitrine-test-{self.suffix}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
        env.update(
            VITRINE_KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            VITRINE_REDIS_URL=self.redis_url,
            VITRINE_APP_ID=self.app_id,
            VITRINE_TOPIC_PARTITIONS=str(self.partitions),
            VITRINE_REDIS_KEY_PREFIX=f"vt-{self.suffix}",
            VITRINE_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        for key, name in self.names.items():
            env[f"VITRINE_TOPIC_{key.upper()}"] = name
        env.update(extra)
        return env


@pytest.fixture
def topics(kafka_stack: LocalStack) -> Topics:
    t = Topics(uuid.uuid4().hex[:10], kafka_stack.bootstrap, kafka_stack.redis_url)
    create_topics(t.bootstrap, dict.fromkeys(t.names.values(), t.partitions))
    return t


class Worker:
    """A ``vitrine worker`` subprocess with its own web port and log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.web_port = free_ports(1)[0]
        self.env = dict(env, VITRINE_WEB_PORT=str(self.web_port))
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> Worker:
        # Appending: a restarted worker keeps the earlier run's lines.
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "worker",
                "--loglevel",
                "info",
                "--without-color",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            # "Ready" is Faust's line once partitions are assigned and agents run.
            if b"[^Worker]: Ready" in self.log_path.read_bytes() and self.ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout_s} s:\n{self.tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/ready", timeout=2) as r:
                return bool(json.load(r)["ready"])
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(
                f"worker ignored {sig!r} for {timeout_s} s:\n{self.tail()}"
            ) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def worker_factory(topics: Topics, tmp_path: Path) -> Iterator[object]:
    started: list[Worker] = []

    def make(**extra_env: str) -> Worker:
        w = Worker(topics.env(**extra_env), tmp_path / f"worker-{len(started)}.log")
        started.append(w)
        return w

    yield make
    for w in started:
        with contextlib.suppress(Exception):
            w.stop(timeout_s=30)
        w.kill()


@pytest.fixture
def producer(kafka_stack: LocalStack) -> Iterator[KafkaProducer]:
    p = KafkaProducer(
        bootstrap_servers=kafka_stack.bootstrap,
        acks="all",
        linger_ms=5,
        max_request_size=16 * 1024 * 1024,
    )
    yield p
    p.close()


def consume(bootstrap: str, topic: str, *, expect: int, timeout_s: float = 60.0) -> list[object]:
    """Read ``topic`` from the beginning until ``expect`` records or the timeout."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=500,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[object] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expect and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            for recs in batch.values():
                out.extend(recs)
        # Anything more that is already there (duplicates, extras) counts too.
        for recs in consumer.poll(timeout_ms=1000).values():
            out.extend(recs)
        return out
    finally:
        consumer.close()
