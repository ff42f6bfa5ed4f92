"""A native Redis Cluster for tests and benchmarks: 3 masters and 3 replicas on one host.

Six ``redis-server`` processes in cluster mode, each in its own directory under
``root`` (``node-<port>/``, with its ``nodes.conf`` and log), joined by
``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes``. The
cluster is ready once every node reports ``cluster_state:ok`` and agrees on who
serves the 16384 slots. Like the plain stack's Redis it keeps nothing on disk
but its node table: it is a view, rebuilt from Kafka.

``cluster-node-timeout`` is short (1 s by default): a master killed with SIGKILL
is failed over to its replica within about two seconds, so that tests of a
failover do not wait the production default of 15 s.

Used by the integration tests' session fixture (``tests/conftest.py``) and by
``vitrine bench cluster``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from streams.tools.stack import StackError, free_ports

__all__ = ["ClusterNode", "RedisClusterStack"]

logger = logging.getLogger(__name__)

#: Masters, and one replica each.
MASTERS = 3


@dataclass
class ClusterNode:
    """One ``redis-server`` of the cluster."""

    port: int
    #: The cluster bus port (``cluster-port``): set, since port + 10000 may be taken.
    bus_port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _command(port: int, *args: str, timeout_s: float = 2.0) -> str:
    """One inline command to a node; its reply as text ('' when it does not answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout_s) as sock:
            sock.sendall((" ".join(args) + "\r\n").encode())
            chunks = []
            sock.settimeout(timeout_s)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                text = b"".join(chunks)
                # A bulk reply ($n\r\n...\r\n) or a status/error line.
                if text[:1] in (b"+", b"-", b":") and text.endswith(b"\r\n"):
                    break
                if text[:1] == b"$":
                    head, _, body = text.partition(b"\r\n")
                    if len(body) >= int(head[1:]) + 2:
                        break
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


class RedisClusterStack:
    """Start, inspect, kill and stop a 6-node Redis Cluster under ``root``."""

    def __init__(
        self, root: Path, ports: list[int] | None = None, node_timeout_ms: int = 1000
    ) -> None:
        self.root = root
        self.node_timeout_ms = node_timeout_ms
        n = 2 * MASTERS
        ports = ports or free_ports(2 * n)
        if len(ports) != 2 * n:
            raise ValueError(f"a cluster of 6 nodes takes 12 ports (client, bus), not {ports}")
        pairs = zip(ports[:n], ports[n:], strict=True)
        self.nodes = [ClusterNode(p, bus, root / f"node-{p}") for p, bus in pairs]

    @property
    def url(self) -> str:
        """A ``redis://`` URL of a live node: a cluster client finds the others from it."""
        node = next((n for n in self.nodes if n.alive), self.nodes[0])
        return f"redis://{node.address}/0"

    # --- lifecycle -------------------------------------------------------------
    def up(self, timeout_s: float = 60.0) -> None:
        """Start the six servers, create the cluster and wait until every node says ok."""
        binary = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if binary is None or cli is None:
            raise StackError(
                "redis-server and redis-cli are not on PATH; install them (apt-get install redis)"
            )
        for node in self.nodes:
            self._start(node, binary)
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            while "PONG" not in _command(node.port, "PING"):
                self._check(node)
                if time.monotonic() > deadline:
                    raise StackError(f"cluster node {node.address} did not answer")
                time.sleep(0.05)
        addresses = [n.address for n in self.nodes]
        create = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, check=False, timeout=timeout_s,
        )  # fmt: skip
        if create.returncode != 0:
            out = f"{create.stdout}\n{create.stderr}"
            raise StackError(f"redis-cli --cluster create failed:\n{out}")
        self.wait_ok(deadline - time.monotonic())

    def _start(self, node: ClusterNode, binary: str) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        log = (node.directory / "redis.log").open("ab")
        node.proc = subprocess.Popen(
            [
                binary, "--port", str(node.port), "--bind", "127.0.0.1",
                "--dir", str(node.directory), "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf", "--cluster-port", str(node.bus_port),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                # A replica may be promoted however long ago it last heard its master.
                "--cluster-replica-validity-factor", "0",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--maxmemory", "256mb", "--maxmemory-policy", "volatile-lru",
            ],
            cwd=node.directory, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        log.close()

    def _check(self, node: ClusterNode) -> None:
        if not node.alive:
            tail = ""
            with contextlib.suppress(OSError):
                tail = (node.directory / "redis.log").read_text(errors="replace")[-2000:]
            raise StackError(f"cluster node {node.address} exited during start:\n{tail}")

    def down(self) -> None:
        """Stop every node this object started (SIGTERM, then SIGKILL)."""
        for node in self.nodes:
            if node.alive:
                assert node.proc is not None
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()

    # --- state -----------------------------------------------------------------
    def info(self, node: ClusterNode) -> dict[str, str]:
        """``CLUSTER INFO`` of one node as a dict ({} when it does not answer)."""
        text = _command(node.port, "CLUSTER", "INFO")
        return dict(
            line.split(":", 1) for line in text.splitlines() if ":" in line and "$" not in line
        )

    def masters(self) -> list[ClusterNode]:
        """The live nodes that serve slots, as the first live node sees it."""
        by_port = {n.port: n for n in self.nodes}
        for node in self.nodes:
            if not node.alive:
                continue
            text = _command(node.port, "CLUSTER", "NODES")
            out = []
            for line in text.splitlines():
                fields = line.split()
                if len(fields) < 8 or "master" not in fields[2] or "fail" in fields[2]:
                    continue
                port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                if port in by_port and by_port[port].alive and len(fields) > 8:
                    out.append(by_port[port])
            if out:
                return out
        return []

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Block until every live node reports ``cluster_state:ok`` and all slots are served."""
        deadline = time.monotonic() + timeout_s
        while True:
            live = [n for n in self.nodes if n.alive]
            infos = [self.info(n) for n in live]
            if (
                live
                and all(
                    i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == "16384"
                    for i in infos
                )
                and len(self.masters()) == MASTERS
                and self._replicas_synced()
            ):
                return
            if time.monotonic() > deadline:
                raise StackError(f"Redis Cluster not ok after {timeout_s:.0f} s: {infos}")
            time.sleep(0.1)

    def _replicas_synced(self) -> bool:
        """Every live replica's link to its master is up (so it can take over)."""
        for node in self.nodes:
            if not node.alive:
                continue
            text = _command(node.port, "INFO", "replication")
            if "role:slave" in text and "master_link_status:up" not in text:
                return False
        return True

    def kill_master(self, index: int = 0) -> ClusterNode:
        """SIGKILL one master, as a crash would; its replica takes over (see :meth:`wait_ok`)."""
        node = self.masters()[index]
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.wait()
        logger.info("killed Redis Cluster master %s", node.address)
        return node
