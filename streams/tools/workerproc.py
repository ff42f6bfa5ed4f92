"""A ``vitrine worker`` in a child process: start it, wait until ready, stop it.

Used by ``vitrine demo`` and ``vitrine simulate`` (when no worker is running,
:func:`ensure_worker`), ``vitrine bench pipeline`` and the integration and
reliability tests, which all need a real worker process they can signal or kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from streams.settings import Settings
from streams.worker.topics import topic_settings
from streams.worker.web import worker_ready

__all__ = ["WorkerProcess", "ensure_worker", "isolated_env", "isolated_topics", "security_env"]


def isolated_topics(tag: str) -> dict[str, str]:
    """Every topic setting (``product_images``, ...) mapped to its default name + ``-tag``."""
    return {name: f"{default}-{tag}" for name, default in topic_settings().items()}


def security_env(settings: Settings) -> dict[str, str]:
    """The ``VITRINE_*`` security settings of ``settings``, for a child worker's environment.

    :func:`isolated_env` drops inherited ``VITRINE_*`` variables; a tool that
    starts a worker against a secured cluster passes these on explicitly.
    """
    env: dict[str, str] = {"VITRINE_KAFKA_SECURITY_PROTOCOL": settings.kafka.security_protocol}
    if settings.kafka.security_protocol.startswith("SASL"):
        env |= {
            "VITRINE_KAFKA_SASL_MECHANISM": settings.kafka.sasl_mechanism,
            "VITRINE_KAFKA_SASL_USERNAME": settings.kafka.sasl_username,
            "VITRINE_KAFKA_SASL_PASSWORD": settings.kafka.sasl_password.get_secret_value(),
        }
    files = {
        "VITRINE_KAFKA_SSL_CAFILE": settings.kafka.ssl_cafile,
        "VITRINE_KAFKA_SSL_CERTFILE": settings.kafka.ssl_certfile,
        "VITRINE_KAFKA_SSL_KEYFILE": settings.kafka.ssl_keyfile,
        "VITRINE_REDIS_SSL_CAFILE": settings.redis.ssl_cafile,
    }
    env |= {name: str(path) for name, path in files.items() if path is not None}
    if password := settings.redis.password.get_secret_value():
        env["VITRINE_REDIS_PASSWORD"] = password
    return env


def isolated_env(
    *,
    bootstrap: str,
    redis_url: str,
    tag: str,
    partitions: int,
    topics: dict[str, str],
    **extra: str,
) -> dict[str, str]:
    """Environment of a worker with its own topics, consumer group and Redis keys.

    Inherited ``VITRINE_*`` variables are dropped so that nothing else leaks in.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
    env.update(
        VITRINE_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        VITRINE_REDIS_URL=redis_url,
        VITRINE_APP_ID=f"vitrine-{tag}",
        VITRINE_REDIS_KEY_PREFIX=tag,
        VITRINE_TOPIC_PARTITIONS=str(partitions),
    )
    env.update({f"VITRINE_TOPIC_{key.upper()}": name for key, name in topics.items()})
    env.update(extra)
    return env


class WorkerProcess:
    """One worker subprocess, configured entirely by its environment."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        web_port: int,
        cpus: frozenset[int] | None = None,
    ) -> None:
        """``cpus``: the cores the worker may run on (CPU affinity, set before it starts)."""
        self.web_port = web_port
        self.env = dict(env, VITRINE_WEB_PORT=str(web_port), PYTHONUNBUFFERED="1")
        self.log_path = log_path
        self.cpus = cpus
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> WorkerProcess:
        """Start the worker and wait until it consumes (see :meth:`wait_ready`)."""
        self.launch()
        self.wait_ready(timeout_s)
        return self

    def launch(self) -> WorkerProcess:
        """Start the worker without waiting (several at once: launch each, then wait)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        cpus = self.cpus

        def pin() -> None:  # in the child, before exec: every thread inherits it
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        with self.log_path.open("ab") as log:  # appending: a restart keeps earlier lines
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.tools.cli", "worker", "--loglevel", "info"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=pin if cpus is not None else None,  # noqa: PLW1509
            )  # fmt: skip
        return self

    def wait_ready(self, timeout_s: float) -> None:
        """Block until Faust says Ready (partitions assigned) and the engine is loaded."""
        deadline = time.monotonic() + timeout_s
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            with self.log_path.open("rb") as fh:
                fh.seek(self._mark)
                started = b"[^Worker]: Ready" in fh.read()
            if started and worker_ready("127.0.0.1", self.web_port):
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout_s} s:\n{self.tail()}")

    def metrics(self) -> str:
        """The worker's Prometheus exposition text."""
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def tail(self, lines: int = 60) -> str:
        """The last lines of the worker's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def dump_stacks(self) -> None:
        """Have the worker log every thread's stack and every asyncio task's (SIGUSR1, mode's)."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGUSR1)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        """Signal the worker and wait for it to exit; return its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError(
                    f"worker ignored signal {sig} for {timeout_s} s:\n{self.tail()}"
                ) from None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the worker's whole process group, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextlib.contextmanager
def ensure_worker(
    settings: Settings,
    *,
    start: bool,
    timeout_s: float,
    log_name: str,
    env: dict[str, str] | None = None,
) -> Iterator[None]:
    """Use the worker that answers on the configured web port, or run one meanwhile.

    With ``start`` false and no worker answering, exit with a message that says
    how to start one. A worker started here logs to ``state_dir/log_name`` and
    is stopped on exit.
    """
    if worker_ready(settings.web.host, settings.web.port):
        print(f"using the worker on {settings.web.host}:{settings.web.port}")
        yield
        return
    if not start:
        raise SystemExit(
            f"no worker answers on {settings.web.host}:{settings.web.port}; "
            "start one with `vitrine worker` or drop --no-worker"
        )
    log_path = settings.state_dir / log_name
    print(f"starting a worker (log: {log_path})")
    worker = WorkerProcess(dict(os.environ, **(env or {})), log_path, web_port=settings.web.port)
    try:
        worker.start(timeout_s)
        yield
    finally:
        worker.stop()
