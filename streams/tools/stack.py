"""The native local stack: one Apache Kafka broker (KRaft) and one Redis server.

These machines have no container engine, so the stack runs the official Kafka
jars and Debian's ``redis-server`` as plain processes. ``up`` is idempotent, waits
until both answer and creates the project's topics
(:data:`streams.worker.topics.TOPICS`); ``down`` stops only the processes whose pid
files this module wrote. :class:`StackSettings` is read by nothing in production;
it lets a test run start its own stack on free ports. ``secure=True`` adds a Kafka
SASL_SSL listener and Redis TLS with an ACL user (certificates:
:mod:`streams.tools.certs`). Layout and settings: docs/CONFIGURATION.md ("The local
stack"); the secure stack: docs/SECURITY.md.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from streams.settings import Settings, group_config
from streams.tools.certs import StackCerts, TlsError, make_certs, read_or_create_secret
from streams.worker.topics import topic_configs, topic_partitions

__all__ = [
    "SECURE_USER",
    "Stack",
    "StackError",
    "StackSettings",
    "StackStatus",
    "create_topics",
    "free_ports",
    "resolve_kafka_jars",
]

logger = logging.getLogger(__name__)

_POM = Path(__file__).resolve().parents[2] / "deploy" / "local" / "pom.xml"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"

# Servers this process started; kept so that they are reaped when stopped here
# (a dropped Popen of a live process warns, and a dead one becomes a zombie).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

#: The SASL and Redis ACL user of a secure stack.
SECURE_USER = "vitrine"
SCRAM_MECHANISM = "SCRAM-SHA-512"


class StackSettings(BaseSettings):
    """The local stack's own settings (``VITRINE_KAFKA_PORT``, ...): its servers, not a client's."""

    model_config = group_config("VITRINE_")

    kafka_version: str = "3.9.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap_mb: int = 768
    redis_port: int = 6379
    # Listeners of a secured stack (`vitrine stack up --secure`), beside the
    # plaintext ones: Kafka SASL_SSL (SCRAM-SHA-512) and Redis TLS.
    kafka_sasl_ssl_port: int = 9095
    redis_tls_port: int = 6390


class StackError(RuntimeError):
    """The local stack could not be set up, started or reached."""


@dataclasses.dataclass(frozen=True)
class StackStatus:
    """What ``vitrine stack status`` reports for one server."""

    name: str
    running: bool
    pid: int | None
    address: str
    log: Path

    def line(self) -> str:
        """One human-readable line."""
        state = f"up (pid {self.pid})" if self.running else "down"
        return f"{self.name:<14} {state:<16} {self.address:<22} log: {self.log}"


def _pom_path() -> Path:
    if _POM.exists():
        return _POM
    raise StackError(
        f"{_POM} not found: the native stack needs the repository checkout "
        "(deploy/local/pom.xml) to resolve the Kafka jars"
    )


def resolve_kafka_jars(state_dir: Path, kafka_version: str) -> Path:
    """Return the directory of Kafka's runtime jars, resolving them with Maven once."""
    libs = state_dir / "kafka-jars" / kafka_version
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is not on PATH; install it (apt-get install maven)")
    tmp = libs.with_name(libs.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    logger.info("resolving Kafka %s jars from Maven Central into %s", kafka_version, libs)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(_pom_path()),
        f"-Dkafka.version={kafka_version}",
        _DEPENDENCY_PLUGIN,
        "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        raise StackError(f"resolving the Kafka jars failed:\n{proc.stdout}\n{proc.stderr}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.touch()
    return libs


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child) still answers kill(0).
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Stack:
    """One native Kafka + Redis pair, identified by its ports.

    ``settings`` are the clients' (state directory, topics, record size);
    ``local`` the servers' own (unset: read from the environment).
    """

    def __init__(
        self,
        settings: Settings,
        name: str | None = None,
        *,
        local: StackSettings | None = None,
        secure: bool = False,
    ) -> None:
        self.settings = settings
        self.local = local or StackSettings()
        self.name = name or f"k{self.local.kafka_port}-r{self.local.redis_port}"
        self.root = settings.state_dir / "stack" / self.name
        self.secure = secure

    # --- paths ---------------------------------------------------------------
    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    def _pid_file(self, server: str) -> Path:
        return self.root / f"{server}.pid"

    def log_file(self, server: str) -> Path:
        """Where a server's output goes."""
        return self.root / f"{server}.log"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.local.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.local.redis_port}/0"

    # --- a secure stack: what a client needs ---------------------------------
    @property
    def certs(self) -> StackCerts:
        """The stack's CA and server key material (made by ``up`` when secure)."""
        return StackCerts(self.root / "tls")

    @property
    def ca_file(self) -> Path:
        """PEM CA that signs both servers' certificates."""
        return self.certs.ca_file

    @property
    def secure_bootstrap_servers(self) -> str:
        """The SASL_SSL listener."""
        return f"127.0.0.1:{self.local.kafka_sasl_ssl_port}"

    @property
    def secure_redis_url(self) -> str:
        """Redis over TLS as the ACL user (the password is a separate setting)."""
        return f"rediss://{SECURE_USER}@127.0.0.1:{self.local.redis_tls_port}/0"

    def _password_file(self, server: str) -> Path:
        return self.root / "secrets" / f"{server}.password"

    @property
    def kafka_password(self) -> SecretStr:
        """The SCRAM password of user ``vitrine`` (random, made once per stack)."""
        return read_or_create_secret(self._password_file("kafka"))

    @property
    def redis_password(self) -> SecretStr:
        """The Redis ACL password of user ``vitrine`` (random, made once per stack)."""
        return read_or_create_secret(self._password_file("redis"))

    def secure_client_env(self) -> dict[str, str]:
        """``VITRINE_*`` variables of a client of the secure listeners (passwords included)."""
        return {
            "VITRINE_KAFKA_BOOTSTRAP_SERVERS": self.secure_bootstrap_servers,
            "VITRINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "VITRINE_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
            "VITRINE_KAFKA_SASL_USERNAME": SECURE_USER,
            "VITRINE_KAFKA_SASL_PASSWORD": self.kafka_password.get_secret_value(),
            "VITRINE_KAFKA_SSL_CAFILE": str(self.ca_file),
            "VITRINE_REDIS_URL": self.secure_redis_url,
            "VITRINE_REDIS_PASSWORD": self.redis_password.get_secret_value(),
            "VITRINE_REDIS_SSL_CAFILE": str(self.ca_file),
        }

    def secure_client_shell(self) -> str:
        """:meth:`secure_client_env` as shell lines that read the passwords from their files."""
        env = self.secure_client_env()
        env["VITRINE_KAFKA_SASL_PASSWORD"] = f'"$(cat {self._password_file("kafka")})"'
        env["VITRINE_REDIS_PASSWORD"] = f'"$(cat {self._password_file("redis")})"'
        return "".join(f"export {k}={v}\n" for k, v in env.items())

    # --- lifecycle -----------------------------------------------------------
    def up(self, *, timeout_s: float = 120.0, create_topics: bool = True) -> None:
        """Start whatever is not running, wait until both answer, create topics."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.secure:
            try:
                make_certs(self.certs.directory)
            except TlsError as exc:
                raise StackError(str(exc)) from exc
        self.start_redis()
        self.start_kafka()
        deadline = time.monotonic() + timeout_s
        self.wait_redis(deadline)
        self.wait_kafka(deadline)
        if create_topics:
            self.create_topics(topic_partitions(self.settings))

    def down(self) -> None:
        """Stop the servers this stack started (by pid file); leave anything else alone."""
        self.stop_kafka()
        self.stop_redis()

    def status(self) -> list[StackStatus]:
        """The state of both servers."""
        out = []
        listeners = [("kafka", "kafka", self.local.kafka_port)]
        if self.secure:
            listeners.append(("kafka", "kafka-sasl-ssl", self.local.kafka_sasl_ssl_port))
        listeners.append(("redis", "redis", self.local.redis_port))
        if self.secure:
            listeners.append(("redis", "redis-tls", self.local.redis_tls_port))
        for server, label, port in listeners:
            pid = self._running_pid(server)
            out.append(
                StackStatus(
                    name=label,
                    running=pid is not None and _port_open(port),
                    pid=pid,
                    address=f"127.0.0.1:{port}",
                    log=self.log_file(server),
                )
            )
        return out

    def _running_pid(self, server: str) -> int | None:
        pid = _read_pid(self._pid_file(server))
        return pid if pid is not None and _alive(pid) else None

    def _spawn(self, server: str, cmd: list[str], cwd: Path, port: int) -> None:
        if self._running_pid(server) is not None:
            logger.info("%s already running (pid file %s)", server, self._pid_file(server))
            return
        if _port_open(port):
            raise StackError(
                f"port {port} for {server} is in use by a process this stack did not start; "
                f"choose another port (VITRINE_{server.upper()}_PORT) or stop that process"
            )
        log = self.log_file(server).open("ab")
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        _CHILDREN[proc.pid] = proc
        self._pid_file(server).write_text(f"{proc.pid}\n")
        logger.info("started %s (pid %d), log %s", server, proc.pid, self.log_file(server))

    def _stop(self, server: str, timeout_s: float = 30.0) -> None:
        pid = self._running_pid(server)
        if pid is None:
            self._pid_file(server).unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            logger.warning(
                "%s (pid %d) ignored SIGTERM for %.0f s; killing", server, pid, timeout_s
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self._pid_file(server).unlink(missing_ok=True)

    def kill(self, server: str) -> None:
        """SIGKILL a server, as a crash would (for reliability tests)."""
        pid = self._running_pid(server)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self._pid_file(server).unlink(missing_ok=True)

    # --- redis ---------------------------------------------------------------
    def start_redis(self) -> None:
        """Start ``redis-server`` on the configured port.

        No persistence: everything in it is a view the worker rebuilds from the
        record topics. ``volatile-lru`` evicts only keys with a TTL (the image
        cache and claims), never state.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError(
                "redis-server is not on PATH; install it (apt-get install redis-server)"
            )
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            binary,
            "--port",
            str(self.local.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.redis_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--maxmemory",
            "512mb",
            "--maxmemory-policy",
            "volatile-lru",
            *(self._redis_secure_args() if self.secure else []),
        ]
        self._spawn("redis", cmd, self.redis_dir, self.local.redis_port)

    def _redis_secure_args(self) -> list[str]:
        """TLS port and ACL file; the password is in the 0600 file, not on the command line."""
        acl = self.redis_dir / "users.acl"
        fd = os.open(acl, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(redis_acl(SECURE_USER, self.redis_password))
        certs = self.certs
        return [
            "--aclfile", str(acl),
            "--tls-port", str(self.local.redis_tls_port),
            "--tls-cert-file", str(certs.server_cert),
            "--tls-key-file", str(certs.server_key),
            "--tls-ca-cert-file", str(certs.ca_file),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def stop_redis(self) -> None:
        """Stop the Redis server this stack started."""
        self._stop("redis")

    def wait_redis(self, deadline: float) -> None:
        """Block until Redis answers PING (on the TLS port too, as the ACL user, when secure)."""
        if self.secure:
            self._wait_redis_secure(deadline)
            return
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.local.redis_port), 1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            self._check_alive("redis")
            time.sleep(0.1)
        raise StackError(f"Redis did not answer on {self.redis_url}; see {self.log_file('redis')}")

    def _wait_redis_secure(self, deadline: float) -> None:
        import redis  # noqa: PLC0415

        password = self.redis_password.get_secret_value()
        clients = [
            redis.Redis.from_url(self.redis_url, username=SECURE_USER, password=password),
            redis.Redis.from_url(
                self.secure_redis_url, password=password, ssl_ca_certs=str(self.ca_file)
            ),
        ]
        try:
            for client in clients:
                while not _redis_pings(client):
                    self._check_alive("redis")
                    if time.monotonic() >= deadline:
                        raise StackError(
                            f"Redis did not answer as user {SECURE_USER} on {self.redis_url} "
                            f"and {self.secure_redis_url}; see {self.log_file('redis')}"
                        )
                    time.sleep(0.1)
        finally:
            for client in clients:
                client.close()

    # --- kafka ---------------------------------------------------------------
    def cluster_id(self) -> str:
        """The KRaft cluster id: 16 bytes from the stack's name, base64url like Kafka's own.

        The top bit is cleared so that the id never starts with ``-`` (base64url
        62), which ``kafka-storage format -t`` would take for an option; Kafka's
        ``Uuid.randomUuid`` avoids such ids for the same reason.
        """
        digest = bytearray(hashlib.sha256(self.name.encode()).digest()[:16])
        digest[0] &= 0x7F
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _write_kafka_config(self) -> Path:
        data = self.kafka_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        port, cport = self.local.kafka_port, self.local.kafka_controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{cport}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": str(self.settings.topics.partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "message.max.bytes": str(self.settings.kafka.max_message_bytes + 64 * 1024),
            "log.retention.hours": "24",
            "log.segment.bytes": str(64 * 1024 * 1024),
            # The cleaner looks for dirty compacted logs every second, not every 15 s
            # (the default): tests/compaction.py waits for it, and it is cheap when idle.
            "log.cleaner.backoff.ms": "1000",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
        }
        if self.secure:
            props.update(self._sasl_ssl_props())
        conf = self.kafka_dir / "server.properties"
        # 0600: a secure stack's file holds the keystore password.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = self.kafka_dir / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=INFO, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka=INFO\nlog4j.logger.org.apache.kafka=INFO\n"
            "log4j.logger.state.change.logger=WARN\nlog4j.logger.kafka.controller=WARN\n"
        )
        return conf

    def _sasl_ssl_props(self) -> dict[str, str]:
        """The SASL_SSL listener beside the plaintext one (which brokers and tools keep)."""
        port, sport = self.local.kafka_port, self.local.kafka_sasl_ssl_port
        cport = self.local.kafka_controller_port
        certs = self.certs
        keystore_password = read_or_create_secret(certs.keystore_password_file)
        return {
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sport},"
                f"CONTROLLER://127.0.0.1:{cport}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sport}",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
            ),
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(certs.keystore),
            "ssl.keystore.password": keystore_password.get_secret_value(),
            "ssl.key.password": keystore_password.get_secret_value(),
            "ssl.client.auth": "none",
        }

    def _java(self, libs: Path, main: str, *args: str, heap_mb: int) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise StackError(
                "java is not on PATH; install a JDK 17 (apt-get install openjdk-17-jre-headless)"
            )
        log4j = self.kafka_dir / "log4j.properties"
        return [
            java,
            f"-Xmx{heap_mb}m",
            f"-Xms{min(heap_mb, 256)}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}",
            f"-Dkafka.logs.dir={self.kafka_dir}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def start_kafka(self) -> None:
        """Format the KRaft storage once and start the broker."""
        if self._running_pid("kafka") is not None:
            logger.info("kafka already running (pid file %s)", self._pid_file("kafka"))
            return
        libs = resolve_kafka_jars(self.settings.state_dir, self.local.kafka_version)
        conf = self._write_kafka_config()
        self._format_storage(libs, conf)
        cmd = self._java(libs, "kafka.Kafka", str(conf), heap_mb=self.local.kafka_heap_mb)
        self._spawn("kafka", cmd, self.kafka_dir, self.local.kafka_port)

    def _format_storage(self, libs: Path, conf: Path) -> None:
        """Format the KRaft storage once; a secure stack's with the SCRAM credential."""
        data = self.kafka_dir / "data"
        formatted = (data / "meta.properties").exists()
        scram_marker = self.kafka_dir / "scram-added"
        if formatted and self.secure and not scram_marker.exists():
            raise StackError(
                f"the Kafka storage in {data} was formatted without SCRAM credentials; "
                f"stop the stack and remove {self.root} to start it secure"
            )
        args = ["format", "-t", self.cluster_id(), "-c", str(conf), "--ignore-formatted"]
        if self.secure:
            # On the format command line for a moment; the stack is on 127.0.0.1 only.
            password = self.kafka_password.get_secret_value()
            args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={SECURE_USER},password={password}]"]
        fmt = self._java(libs, "kafka.tools.StorageTool", *args, heap_mb=256)
        proc = subprocess.run(fmt, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            out = f"{proc.stdout}\n{proc.stderr}"
            if self.secure:
                out = out.replace(self.kafka_password.get_secret_value(), "**********")
            raise StackError(f"formatting Kafka storage failed:\n{out}")
        if self.secure and not formatted:
            scram_marker.touch()

    def stop_kafka(self) -> None:
        """Stop the broker this stack started (controlled shutdown)."""
        self._stop("kafka", timeout_s=60.0)

    def _check_alive(self, server: str) -> None:
        if self._running_pid(server) is None:
            tail = ""
            with contextlib.suppress(OSError):
                tail = "".join(
                    self.log_file(server).read_text(errors="replace").splitlines(True)[-20:]
                )
            raise StackError(f"{server} exited during start; last log lines:\n{tail}")

    def wait_kafka(self, deadline: float) -> None:
        """Block until the broker serves metadata."""
        from kafka import KafkaAdminClient  # noqa: PLC0415 (kafka-python is slow to import)
        from kafka.errors import KafkaError  # noqa: PLC0415

        listeners: list[tuple[int, dict[str, Any]]] = [
            (self.local.kafka_port, {"bootstrap_servers": self.bootstrap_servers})
        ]
        if self.secure:
            listeners.append((self.local.kafka_sasl_ssl_port, self.secure_admin_config()))
        for port, config in listeners:
            while True:
                self._check_alive("kafka")
                if _port_open(port):
                    try:
                        admin = KafkaAdminClient(
                            **config, request_timeout_ms=5000, client_id="vitrine-stack"
                        )
                        try:
                            admin.list_topics()
                            break
                        finally:
                            admin.close()
                    except KafkaError:
                        pass
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"Kafka did not answer on 127.0.0.1:{port}; see {self.log_file('kafka')}"
                    )
                time.sleep(0.25)

    def secure_admin_config(self) -> dict[str, Any]:
        """kafka-python keywords of a client of the SASL_SSL listener."""
        return {
            "bootstrap_servers": self.secure_bootstrap_servers,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_plain_username": SECURE_USER,
            "sasl_plain_password": self.kafka_password.get_secret_value(),
            "ssl_cafile": str(self.ca_file),
        }

    def create_topics(self, specs: dict[str, int], replication: int = 1) -> list[str]:
        """Create the missing topics; return the names created."""
        return create_topics(
            self.bootstrap_servers, specs, replication, configs=topic_configs(self.settings)
        )


def create_topics(
    bootstrap: str,
    specs: dict[str, int],
    replication: int = 1,
    *,
    security: Mapping[str, Any] | None = None,
    compacted: Iterable[str] = (),
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create those of ``specs`` (name -> partitions) that do not exist yet.

    ``compacted``: names created with ``cleanup.policy=compact``; ``configs``:
    topic configurations by name (:func:`topic_configs`), over ``compacted``.

    ``security``: kafka-python's security keywords (``security_protocol``,
    ``sasl_*``, ``ssl_*``), for a secured listener.
    """
    from kafka import KafkaAdminClient  # noqa: PLC0415
    from kafka.admin import NewTopic  # noqa: PLC0415
    from kafka.errors import TopicAlreadyExistsError  # noqa: PLC0415

    admin = KafkaAdminClient(
        **{"bootstrap_servers": bootstrap, **(security or {})}, client_id="vitrine-topics"
    )
    per_topic: dict[str, dict[str, str]] = {n: {"cleanup.policy": "compact"} for n in compacted}
    for name, conf in (configs or {}).items():
        per_topic[name] = dict(conf)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=n,
                replication_factor=replication,
                topic_configs=per_topic.get(name, {}),
            )
            for name, n in specs.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, timeout_ms=30_000)
            logger.info("created topics %s", ", ".join(t.name for t in missing))
        return [t.name for t in missing]
    finally:
        admin.close()


def redis_acl(user: str, password: SecretStr) -> str:
    """An ACL file: the default user off, ``user`` with every command on ``vitrine*`` keys."""
    return (
        "user default off\n"
        f"user {user} on >{password.get_secret_value()} ~vitrine* resetchannels +@all\n"
    )


def _redis_pings(client: Any) -> bool:
    from redis.exceptions import RedisError  # noqa: PLC0415

    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False


def free_ports(count: int) -> list[int]:
    """Ports that were free a moment ago (for test stacks)."""
    socks: Iterable[socket.socket] = [socket.socket() for _ in range(count)]
    ports = []
    for s in socks:
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports
