"""Real Kafka + Redis for the integration and reliability suites, started once per session.

The stack runs on free ports under ``~/.cache/vitrine/stack/test-<pid>`` (the
Kafka jars cache is shared), so it never collides with a stack a person
started by hand. To use an existing stack instead, set
``VITRINE_TEST_KAFKA_PORT`` and ``VITRINE_TEST_REDIS_PORT``.

Every test gets fresh uuid-suffixed topic names and its own Faust app id
(hence its own consumer group), so tests never see each other's data.

A Redis Cluster (3 masters, 3 replicas: :mod:`streams.tools.redis_cluster`) is
started for the session the first time a test asks for it: a test marked
:data:`ON_BOTH_REDIS` runs once on the plain Redis and once on the cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.settings import RedisSettings, Settings, get_settings
from streams.tools.redis_cluster import RedisClusterStack
from streams.tools.stack import Stack, StackSettings, create_topics, free_ports
from streams.tools.workerproc import WorkerProcess, isolated_env, isolated_topics

ROOT = Path(__file__).resolve().parents[1]

#: Run a test that uses ``topics`` (and the workers built on it) once against
#: the plain Redis and once against the session's Redis Cluster.
ON_BOTH_REDIS = pytest.mark.parametrize("topics", ["redis", "cluster"], indirect=True)


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


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Forget the process-wide settings around every test.

    ``get_settings()`` reads the environment once per process; without this, a
    test that sets ``VITRINE_*`` with monkeypatch would get whatever an earlier
    test in the same session happened to read (in CI: the default
    ``127.0.0.1:9092``, where no broker runs).
    """
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def kafka_stack() -> Iterator[LocalStack]:
    kport = os.environ.get("VITRINE_TEST_KAFKA_PORT")
    rport = os.environ.get("VITRINE_TEST_REDIS_PORT")
    if kport and rport:
        settings = Settings()
        local = StackSettings(kafka_port=int(kport), redis_port=int(rport))
        stack = Stack(settings, name=f"k{kport}-r{rport}", local=local)
        yield LocalStack(stack, settings)
        return
    yield from _start_stack(f"test-{os.getpid()}")


def _start_stack(name: str) -> Iterator[LocalStack]:
    kp, cp, rp = free_ports(3)
    settings = Settings()
    local = StackSettings(kafka_port=kp, kafka_controller_port=cp, redis_port=rp)
    stack = Stack(settings, name=name, local=local)
    shutil.rmtree(stack.root, ignore_errors=True)
    try:
        # Inside the try: if Kafka fails to start, the Redis already started stops too.
        stack.up(timeout_s=240, create_topics=False)
        yield LocalStack(stack, settings)
    finally:
        stack.down()
        shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterStack]:
    """A Redis Cluster of 3 masters and 3 replicas for the session (started on first use)."""
    cluster = RedisClusterStack(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


@dataclass
class Topics:
    """One test's topic names, app id and worker environment."""

    suffix: str
    bootstrap: str
    redis_url: str
    partitions: int = 2
    #: ``redis_url`` is a node of a Redis Cluster (``VITRINE_REDIS_CLUSTER``).
    redis_cluster: bool = False
    names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = isolated_topics(f"test-{self.suffix}")

    def __getattr__(self, item: str) -> str:
        try:
            return self.__dict__["names"][item]
        except KeyError:
            raise AttributeError(item) from None

    @property
    def key_prefix(self) -> str:
        """The workers' ``redis.key_prefix``."""
        return f"test-{self.suffix}"

    def settings(self, **values: object) -> Settings:
        """The workers' Redis settings, for the Python API in a test."""
        redis = RedisSettings(
            url=self.redis_url, cluster=self.redis_cluster, key_prefix=self.key_prefix
        )
        return Settings(redis=redis, **values)  # type: ignore[arg-type]

    def redis_client(self) -> redis.Redis | redis.RedisCluster:
        """A synchronous client of the workers' Redis, for checks in a test."""
        if self.redis_cluster:
            return redis.RedisCluster.from_url(self.redis_url)
        return redis.Redis.from_url(self.redis_url)

    def env(self, **extra: str) -> dict[str, str]:
        if self.redis_cluster:
            extra = {"VITRINE_REDIS_CLUSTER": "true", **extra}
        return isolated_env(
            bootstrap=self.bootstrap,
            redis_url=self.redis_url,
            tag=f"test-{self.suffix}",
            partitions=self.partitions,
            topics=self.names,
            **{"VITRINE_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", **extra},
        )


def make_topics(
    stack: LocalStack,
    partitions: int = 2,
    *,
    compacted: Iterable[str] = (),
    cluster: RedisClusterStack | None = None,
) -> Topics:
    """Fresh uuid topics on ``stack``, created with ``partitions`` each.

    ``compacted``: topic settings (``"category_sales"``, ...) whose topics are
    created with ``cleanup.policy=compact``, as the stack creates them.
    ``cluster``: the workers' Redis is that Redis Cluster, not the stack's Redis.
    """
    url = cluster.url if cluster is not None else stack.redis_url
    t = Topics(uuid.uuid4().hex[:10], stack.bootstrap, url, partitions, cluster is not None)
    create_topics(
        t.bootstrap,
        dict.fromkeys(t.names.values(), t.partitions),
        compacted=[t.names[name] for name in compacted],
    )
    return t


@pytest.fixture
def topics(kafka_stack: LocalStack, request: pytest.FixtureRequest) -> Topics:
    """Fresh topics; on the Redis Cluster where parametrised so (:data:`ON_BOTH_REDIS`)."""
    kind = getattr(request, "param", "redis")
    cluster = request.getfixturevalue("redis_cluster") if kind == "cluster" else None
    return make_topics(kafka_stack, cluster=cluster)


@pytest.fixture(scope="module")
def private_stack() -> Iterator[LocalStack]:
    """A stack of the module's own, for tests that stop, kill or restart its servers."""
    yield from _start_stack(f"rel-{os.getpid()}-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def worker_factory(topics: Topics, tmp_path: Path) -> Iterator[object]:
    started: list[WorkerProcess] = []

    def make(**extra_env: str) -> WorkerProcess:
        w = WorkerProcess(
            topics.env(**extra_env),
            tmp_path / f"worker-{len(started)}.log",
            web_port=free_ports(1)[0],
        )
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


@pytest.fixture
def bench_env(kafka_stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The benches' settings: the session's stack, 2 partitions, state in ``tmp_path``."""
    monkeypatch.setenv("VITRINE_KAFKA_BOOTSTRAP_SERVERS", kafka_stack.bootstrap)
    monkeypatch.setenv("VITRINE_REDIS_URL", kafka_stack.redis_url)
    monkeypatch.setenv("VITRINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("VITRINE_TOPIC_PARTITIONS", "2")
    return tmp_path
