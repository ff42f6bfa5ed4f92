"""Fixtures of the reliability suite: a stack of the module's own, its topics, producer, workers."""

from __future__ import annotations

from typing import Any

import pytest
from kafka import KafkaProducer

from streams.tools.workerproc import WorkerProcess
from tests.conftest import LocalStack, Topics, make_topics


@pytest.fixture
def rtopics(private_stack: LocalStack) -> Topics:
    return make_topics(private_stack)


@pytest.fixture
def rproducer(private_stack: LocalStack) -> Any:
    p = KafkaProducer(
        bootstrap_servers=private_stack.bootstrap,
        acks="all",
        linger_ms=5,
        retries=50,
        retry_backoff_ms=200,
        max_request_size=16 * 1024 * 1024,
    )
    yield p
    p.close()


@pytest.fixture
def rworkers(rtopics: Topics, tmp_path: Any) -> Any:
    from streams.tools.stack import free_ports

    started: list[WorkerProcess] = []

    def make(web_port: int | None = None, **env: str) -> WorkerProcess:
        # A worker started again in place keeps its port (and so its instance id).
        w = WorkerProcess(
            rtopics.env(**env), tmp_path / f"w{len(started)}.log",
            web_port=web_port or free_ports(1)[0],
        )  # fmt: skip
        started.append(w)
        return w

    yield make
    for w in started:
        w.kill()
