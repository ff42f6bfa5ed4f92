"""A secured stack for real: Kafka over SASL_SSL (SCRAM-SHA-512), Redis over TLS with an ACL user.

One secure stack for the module, started here on free ports (like the
session stack of ``tests/conftest.py``) and stopped at the end. The worker and
the tools reach it only through the secured listeners; the plaintext Kafka
listener is used for nothing but creating the topics. Every test also checks
that no password of the stack shows in what it can read: logs, stdout and
stderr, the ``/metrics`` page, the settings' ``repr``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas import codec
from streams.settings import Settings, settings_from_env
from streams.tools.certs import make_certs
from streams.tools.stack import Stack, StackSettings, create_topics, free_ports
from streams.tools.workerproc import WorkerProcess, isolated_env, isolated_topics
from tests.conftest import ROOT
from tests.events import SAMPLES_DIR, listing, order, photo_bytes
from tests.polling import wait_until

pytestmark = pytest.mark.integration

# A refusal must be reported in this long, not after a client's retries give up.
REFUSAL_BOUND_S = 45.0


@pytest.fixture(scope="module")
def secure_stack() -> Iterator[Stack]:
    kp, cp, sp, rp, tp = free_ports(5)
    local = StackSettings(
        kafka_port=kp,
        kafka_controller_port=cp,
        kafka_sasl_ssl_port=sp,
        redis_port=rp,
        redis_tls_port=tp,
    )
    name = f"sec-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    stack = Stack(Settings(), name=name, local=local, secure=True)
    shutil.rmtree(stack.root, ignore_errors=True)
    try:
        stack.up(timeout_s=240, create_topics=False)
        yield stack
    finally:
        stack.down()
        shutil.rmtree(stack.root, ignore_errors=True)


def secrets_of(stack: Stack) -> list[str]:
    return [
        stack.kafka_password.get_secret_value(),
        stack.redis_password.get_secret_value(),
        stack.certs.keystore_password_file.read_text().strip(),
    ]


def assert_no_secret(stack: Stack, *texts: str) -> None:
    for secret in secrets_of(stack):
        for text in texts:
            assert secret not in text


class Secured:
    """One test's uuid topics on the secure stack, and the environment of its clients."""

    def __init__(self, stack: Stack, partitions: int = 2) -> None:
        self.stack = stack
        self.tag = f"sec-{uuid.uuid4().hex[:10]}"
        self.names = isolated_topics(self.tag)
        create_topics(stack.bootstrap_servers, dict.fromkeys(self.names.values(), partitions))
        self.partitions = partitions

    def env(self, **extra: str) -> dict[str, str]:
        env = isolated_env(
            bootstrap=self.stack.secure_bootstrap_servers,
            redis_url=self.stack.secure_redis_url,
            tag=self.tag,
            partitions=self.partitions,
            topics=self.names,
        )
        env.update(self.stack.secure_client_env())
        # The ACL user may use keys under vitrine* only.
        env.update(
            VITRINE_REDIS_KEY_PREFIX=f"vitrine-{self.tag}",
            VITRINE_IMAGE_FILE_ROOT=str(SAMPLES_DIR),
            VITRINE_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.stack.secure_redis_url,
            password=self.stack.redis_password.get_secret_value(),
            ssl_ca_certs=str(self.stack.ca_file),
        )


def publish(stack: Stack, topic: str, events: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(**stack.secure_admin_config(), acks="all")
    try:
        for key, value in events:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def consume(stack: Stack, topic: str, *, expect: int, timeout_s: float = 90.0) -> list[Any]:
    """Read ``topic`` from the beginning over SASL_SSL until ``expect`` records or the timeout."""
    consumer = KafkaConsumer(**stack.secure_admin_config(), enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expect and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(recs)
        return out
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def secured(secure_stack: Stack) -> Secured:
    return Secured(secure_stack)


@pytest.fixture(scope="module")
def worker(secured: Secured, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker on the secured listeners, for the labelling and the tools' tests."""
    log = tmp_path_factory.mktemp("secured-worker") / "worker.log"
    # A 5 s Redis timeout: the test asserts no lookup bypassed Redis (refused
    # credentials would), and the default timeout lapsed once on a loaded machine
    # (a view's offsets read, in CI with a load average of 10).
    env = secured.env(VITRINE_ORDER_LABEL_WAIT_MS="300", VITRINE_REDIS_TIMEOUT_MS="5000")
    w = WorkerProcess(env, log, web_port=free_ports(1)[0])
    try:
        w.start(timeout_s=180)
        yield w
    finally:
        with contextlib.suppress(Exception):
            w.stop(timeout_s=30)
        w.kill()


def test_a_worker_labels_and_enriches_over_sasl_ssl_and_caches_in_tls_redis(
    secured: Secured, worker: WorkerProcess
) -> None:
    stack = secured.stack
    photos = dict(photo_bytes())
    publish(
        stack,
        secured.names["product_images"],
        [listing("banana", photos["Banana"]), listing("lemon", photos["Lemon"])],
    )
    labels = {
        lab.product_id: lab
        for lab in (
            codec.decode_product_labelled(r.value)
            for r in consume(stack, secured.names["product_labels"], expect=2)
        )
    }
    assert set(labels) == {"banana", "lemon"}
    publish(
        stack,
        secured.names["orders"],
        [
            order("o-1", [("banana", 3, 0.5), ("lemon", 1, 0.8)]),
            order("o-2", [("ghost", 1, 9.99)]),
        ],
    )
    enriched = {
        e.order_id: e
        for e in (
            codec.decode_enriched_order(r.value)
            for r in consume(stack, secured.names["orders_enriched"], expect=2)
        )
    }
    assert set(enriched) == {"o-1", "o-2"}
    o1 = {it.product_id: it for it in enriched["o-1"].items}
    assert o1["banana"].category == labels["banana"].category
    assert o1["banana"].category_status == "labelled"
    assert enriched["o-2"].items[0].unknown_reason == "not_labelled"

    # The labels are in the ACL + TLS Redis, readable with the same credentials.
    client = secured.redis()
    try:
        wait_until(
            lambda: client.exists(f"vitrine-{secured.tag}:product:banana") == 1,
            "the product view to hold the banana",
        )
        assert client.exists(f"vitrine-{secured.tag}:img:{{{labels['banana'].image_sha256}}}") == 1
    finally:
        client.close()
    metrics = worker.metrics()
    assert "vitrine_cache_bypassed_total" not in metrics or all(
        line.endswith(" 0.0")
        for line in metrics.splitlines()
        if line.startswith("vitrine_cache_bypassed_total")
    )
    settings = settings_from_env(secured.env())
    assert_no_secret(stack, worker.log_path.read_text(), metrics, repr(settings), str(settings))


def run_tool(env: dict[str, str], *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run a vitrine command; past ``timeout_s`` fail with what it printed (not a bare timeout)."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "streams.tools.cli", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out, err = (x.decode(errors="replace") if isinstance(x, bytes) else x or ""
                    for x in (exc.stdout, exc.stderr))  # fmt: skip
        command = " ".join(args)
        pytest.fail(f"vitrine {command} ran past {timeout_s} s\n{out[-3000:]}\n{err[-6000:]}")


def test_demo_and_bench_consume_run_against_the_secured_listener(
    secured: Secured, worker: WorkerProcess
) -> None:
    env = secured.env(VITRINE_WEB_PORT=str(worker.web_port))
    demo = run_tool(env, "demo", "--no-worker", "--timeout", "120", timeout_s=240)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "demo complete" in demo.stdout
    bench = run_tool(env, "bench", "consume", "--events", "2000", "--json", timeout_s=400)
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    assert '"events": 2000' in bench.stdout
    assert_no_secret(secured.stack, demo.stdout, demo.stderr, bench.stdout, bench.stderr)


def test_bench_pipeline_and_its_own_worker_run_against_the_secured_listener(
    secured: Secured,
) -> None:
    env = secured.env()
    # Under the test's own 300 s limit, so that a hang prints the bench's output
    # (it ran past 300 s once in a CI run, against 50 to 75 s usually).
    bench = run_tool(env, "bench", "pipeline", "--images", "16", "--trials", "1", "--json",
                     timeout_s=240)  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    assert '"pipeline misses"' in bench.stdout
    assert_no_secret(secured.stack, bench.stdout, bench.stderr)


@pytest.fixture(scope="module")
def untrusted_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA of another stack: valid, but not the one that signed the broker's certificate."""
    return make_certs(tmp_path_factory.mktemp("other-ca") / "tls").ca_file


REFUSALS = {
    "wrong password": (
        {"VITRINE_KAFKA_SASL_PASSWORD": "not-the-password"},
        "refused the SASL credentials of user 'vitrine' (SCRAM-SHA-512)",
    ),
    "untrusted CA": (
        {},  # the CA file is set by the test
        "the TLS handshake failed (self-signed certificate in certificate chain)",
    ),
}


def _refused_env(secured: Secured, case: str, untrusted_ca: Path) -> tuple[dict[str, str], str]:
    extra, message = REFUSALS[case]
    env = secured.env(**extra)
    if case == "untrusted CA":
        env["VITRINE_KAFKA_SSL_CAFILE"] = str(untrusted_ca)
    return env, message


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_worker_refuses_to_start_on_a_wrong_password_or_an_untrusted_ca(
    secured: Secured, case: str, untrusted_ca: Path, tmp_path: Path
) -> None:
    env, message = _refused_env(secured, case, untrusted_ca)
    w = WorkerProcess(env, tmp_path / "worker.log", web_port=free_ports(1)[0])
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="worker exited with 1"):
            w.start(timeout_s=REFUSAL_BOUND_S)
    finally:
        w.kill()
    assert time.monotonic() - started < REFUSAL_BOUND_S
    log = w.log_path.read_text()
    assert message in log
    assert "VITRINE_KAFKA_SASL_PASSWORD" in log or "VITRINE_KAFKA_SSL_CAFILE" in log
    assert_no_secret(secured.stack, log)
    assert "not-the-password" not in log


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_tool_refuses_a_wrong_password_or_an_untrusted_ca_with_a_clear_error(
    secured: Secured, case: str, untrusted_ca: Path
) -> None:
    env, message = _refused_env(secured, case, untrusted_ca)
    started = time.monotonic()
    demo = run_tool(env, "demo", "--no-worker", timeout_s=REFUSAL_BOUND_S)
    assert time.monotonic() - started < REFUSAL_BOUND_S
    assert demo.returncode == 1
    first_error = next(line for line in demo.stderr.splitlines() if line.startswith("Error:"))
    assert message in first_error
    assert "Traceback" not in demo.stderr
    assert_no_secret(secured.stack, demo.stdout, demo.stderr)
    assert "not-the-password" not in demo.stdout + demo.stderr


def test_a_wrong_redis_password_bypasses_the_cache_and_labelling_goes_on(
    secure_stack: Stack, tmp_path: Path
) -> None:
    secured = Secured(secure_stack)
    wrong = "not-the-redis-password"
    w = WorkerProcess(
        # 5 s: on a loaded machine a 1 s AUTH times out ("unreachable") before
        # Redis can refuse it, and the refusal is what this test reads.
        secured.env(VITRINE_REDIS_PASSWORD=wrong, VITRINE_REDIS_TIMEOUT_MS="5000"),
        tmp_path / "worker.log",
        web_port=free_ports(1)[0],
    )
    try:
        w.start(timeout_s=180)
        photos = dict(photo_bytes())
        events = [listing(f"p-{i}", photos["Banana"]) for i in range(3)]
        publish(secure_stack, secured.names["product_images"], events)
        labels = [
            codec.decode_product_labelled(r.value)
            for r in consume(secure_stack, secured.names["product_labels"], expect=3)
        ]
        metrics = w.metrics()
    finally:
        with contextlib.suppress(Exception):
            w.stop(timeout_s=30)
        w.kill()
    assert sorted(lab.product_id for lab in labels) == ["p-0", "p-1", "p-2"]
    bypassed = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("vitrine_cache_bypassed_total")
    ]
    assert sum(bypassed) >= 1
    log = w.log_path.read_text()
    assert log.count("Redis refused the credentials") == 1
    assert "VITRINE_REDIS_PASSWORD" in log
    assert wrong not in log
    assert_no_secret(secure_stack, log, metrics)
