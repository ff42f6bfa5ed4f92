"""The Redis client the ``redis_*`` settings describe: one server, or a Redis Cluster.

With ``redis_cluster`` set, ``redis_url`` names any one node and redis-py's
:class:`~redis.asyncio.cluster.RedisCluster` finds the others. A cluster refuses a
command whose keys span hash slots (``CROSSSLOT``), so :func:`mget` and
:class:`SlotSafePipeline` split an MGET or MSET into one per slot within one
pipeline (still one round trip per batch, to each master in parallel), and
:func:`group_by_slot` groups keys for calls that must stay in one slot. A failover
is retried for up to ``redis_cluster_failover_ms`` before it counts as an outage.
On one server the same calls are a plain MGET and a plain pipeline.
Details: docs/REDIS-CLUSTER.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

__all__ = [
    "REDIS_ERRORS",
    "RedisClient",
    "SlotSafePipeline",
    "build_client",
    "group_by_slot",
    "is_cluster",
    "mget",
    "pipeline",
    "slot_of",
]

RedisClient = aioredis.Redis | RedisCluster
_Key = TypeVar("_Key", str, bytes)

#: What a Redis call may raise when Redis (or the cluster) is down, refusing or
#: failing over. RedisClusterException is not a RedisError: it is what an
#: unreachable cluster, or a slot no node serves, raises.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)

#: Backoff between a cluster command's tries: 50, 100, 200, 400 ms, then 500 ms.
_BACKOFF_BASE_S = 0.025
_BACKOFF_CAP_S = 0.5
#: Shortest time between two slot-map refreshes that errors ask for.
_TOPOLOGY_REFRESH_MIN_S = 0.1


def _failover_retry(failover_ms: int) -> Retry:
    """A retry policy whose sleeps add up to at least ``failover_ms``."""
    total_s, tries, slept = failover_ms / 1000, 0, 0.0
    while slept < total_s and tries < 8:  # the doubling part
        tries += 1
        slept += min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**tries)
    if slept < total_s:
        tries += math.ceil((total_s - slept) / _BACKOFF_CAP_S)
    return Retry(ExponentialBackoff(cap=_BACKOFF_CAP_S, base=_BACKOFF_BASE_S), tries)


def build_client(
    url: str,
    *,
    cluster: bool,
    timeout_ms: int,
    password: str | None = None,
    ssl_cafile: str | None = None,
    failover_ms: int = 20_000,
) -> RedisClient:
    """A client of one server, or of the cluster ``url``'s node belongs to."""
    timeout = timeout_ms / 1000
    # Only TLS connections take a CA (a plain connection refuses the keyword).
    tls = {"ssl_ca_certs": ssl_cafile} if ssl_cafile and url.startswith("rediss:") else {}
    common: dict[str, Any] = {
        "password": password or None,
        **tls,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 0,
    }
    if cluster:
        return RedisCluster.from_url(
            url,
            retry=_failover_retry(failover_ms),
            # redis-py's default (1 s) makes every try on a cluster none of whose
            # nodes answers wait that long before it gives up; a slot map read is cheap.
            topology_refresh_min_interval=_TOPOLOGY_REFRESH_MIN_S,
            **common,
        )
    return aioredis.from_url(url, retry_on_timeout=False, **common)


def is_cluster(client: Any) -> bool:
    """True for a cluster client."""
    return isinstance(client, RedisCluster)


def slot_of(key: str | bytes) -> int:
    """The hash slot of ``key`` (its ``{tag}``'s, where it has one)."""
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def group_by_slot(keys: Iterable[_Key]) -> list[list[_Key]]:
    """``keys`` grouped by hash slot, groups and keys in first-seen order."""
    groups: dict[int, list[_Key]] = {}
    for key in keys:
        groups.setdefault(slot_of(key), []).append(key)
    return list(groups.values())


class SlotSafePipeline:
    """A non-transactional pipeline in which MGET, MSET or UNLINK may name keys of any slots.

    On a cluster each is queued as one command per slot (redis-py refuses them
    in a cluster pipeline, or runs them apart), and :meth:`execute` folds their replies
    back into one, so the caller reads one reply per command it queued, as on
    one server. Every other command goes to redis-py's pipeline as it is; a
    cluster pipeline splits ``DEL``, ``EXISTS`` and ``TOUCH`` of keys in several
    slots into one command, and one reply, per slot.
    """

    def __init__(self, pipe: Pipeline | ClusterPipeline) -> None:
        self._pipe = pipe
        self._cluster = isinstance(pipe, ClusterPipeline)
        #: (index of the first per-slot reply, their number, what makes them one reply)
        self._folds: list[tuple[int, int, Callable[[list[Any]], Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    def __len__(self) -> int:
        return len(self._pipe)

    def mget(self, keys: Sequence[str]) -> SlotSafePipeline:
        """Queue the values of ``keys``: one reply, a list in ``keys``' order."""
        if not self._cluster:
            self._pipe.mget(keys)
            return self
        by_slot: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_slot.setdefault(slot_of(key), []).append(i)
        groups = list(by_slot.values())

        def values(replies: list[Any]) -> list[Any]:
            out: list[Any] = [None] * len(keys)
            for positions, reply in zip(groups, replies, strict=True):
                for i, value in zip(positions, reply, strict=True):
                    out[i] = value
            return out

        self._folds.append((len(self._pipe), len(groups), values))
        for positions in groups:
            # redis-py blocks ClusterPipeline.mget (it cannot split it); one slot is safe.
            self._pipe.execute_command("MGET", *(keys[i] for i in positions))
        return self

    def mset(self, mapping: Mapping[str, Any]) -> SlotSafePipeline:
        """Queue writes of ``mapping``'s keys: one reply, True."""
        if not self._cluster:
            self._pipe.mset(dict(mapping))
            return self
        groups = group_by_slot(mapping)
        self._folds.append((len(self._pipe), len(groups), all))
        for group in groups:
            self._pipe.execute_command("MSET", *(x for k in group for x in (k, mapping[k])))
        return self

    def unlink(self, *keys: str) -> SlotSafePipeline:
        """Queue an UNLINK of ``keys``: one reply, the number unlinked.

        redis-py's cluster pipeline runs ``unlink`` as a coroutine of its own
        (one key, awaited); this queues it like any other command.
        """
        if not self._cluster:
            self._pipe.unlink(*keys)
            return self
        groups = group_by_slot(keys)
        self._folds.append((len(self._pipe), len(groups), sum))
        for group in groups:
            self._pipe.execute_command("UNLINK", *group)
        return self

    async def execute(self) -> list[Any]:
        """Run the queued commands; one reply per command queued here."""
        replies: list[Any] = await self._pipe.execute()
        # Last first, so that folding one does not move the start of an earlier one.
        for start, n, fold in reversed(self._folds):
            replies[start : start + n] = [fold(replies[start : start + n])]
        self._folds.clear()
        return replies


def pipeline(client: RedisClient) -> SlotSafePipeline:
    """A non-transactional, slot-safe pipeline of ``client``."""
    return SlotSafePipeline(client.pipeline(transaction=False))


async def mget(client: RedisClient, keys: Sequence[str]) -> list[bytes | None]:
    """The values of ``keys`` in one round trip (per cluster master, in parallel)."""
    if not is_cluster(client):
        values: list[bytes | None] = await client.mget(keys)  # type: ignore[assignment]
        return values
    pipe = pipeline(client)
    pipe.mget(keys)
    (values,) = await pipe.execute()
    return values
