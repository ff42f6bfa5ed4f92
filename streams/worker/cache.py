"""Vitrine's Redis: the image-result cache, and the connection the views share.

Cache keys (``<prefix>:img:{<sha256>}`` -> an
:class:`~streams.worker.imageresult.ImageResult`, and the inference claims) have a
TTL and may be evicted; the views' state keys (:mod:`streams.worker.views`) have
none. An image's claim and result share the ``{<sha256>}`` hash tag, so that on a
Redis Cluster one master serves both in the order they were sent. One MGET and one
pipelined write per batch. When Redis is down, slow or refuses the credentials,
the cache steps aside (misses, skipped writes, counted, logged once) rather than
stop labelling; a Redis full of state refuses writes (counted) and the views
wait for room, catching up from the topics.
Keys and outage behaviour: docs/ARCHITECTURE.md ("State") and docs/OPERATIONS.md.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from redis.asyncio.client import Pipeline
from redis.exceptions import AuthenticationError, OutOfMemoryError, ResponseError

from streams.settings import Settings
from streams.worker import metrics
from streams.worker.imageresult import ImageResult, decode_image_result, encode_image_result
from streams.worker.redisclient import REDIS_ERRORS, build_client, is_cluster, pipeline
from streams.worker.redisclient import mget as slot_safe_mget
from streams.worker.state import ProductState, decode_product_state

__all__ = ["CacheUnavailable", "LabelCache"]

logger = logging.getLogger(__name__)


class CacheUnavailable(Exception):
    """Redis could not be reached for this lookup."""


def _result_of(value: bytes | None, model_name: str, model_version: str) -> ImageResult | None:
    """A cached image result, if ``value`` is one and comes from this model."""
    if value is None:
        return None
    result = decode_image_result(value)
    if result is None or (result.model_name, result.model_version) != (model_name, model_version):
        return None
    return result


def _refused(exc: BaseException) -> bool:
    """True for an authentication or ACL refusal (NOAUTH, WRONGPASS, NOPERM)."""
    if isinstance(exc, AuthenticationError):
        return True
    return isinstance(exc, ResponseError) and str(exc).split(" ", 1)[0] in (
        "NOAUTH",
        "WRONGPASS",
        "NOPERM",
    )


class LabelCache:
    """Batch reads and writes of labels in Redis, with outage bypass."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: int,
        timeout_ms: int,
        prefix: str = "vitrine",
        password: str | None = None,
        ssl_cafile: str | None = None,
        retry_after_s: float = 1.0,
        cluster: bool = False,
        cluster_failover_ms: int = 20_000,
    ) -> None:
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._redis = build_client(
            url,
            cluster=cluster,
            timeout_ms=timeout_ms,
            password=password,
            ssl_cafile=ssl_cafile,
            failover_ms=cluster_failover_ms,
        )
        self._down_since: float | None = None
        # The kinds of failure ("refused", "unreachable") logged in this outage, once
        # each: a timeout before the first refusal must not hide refused credentials.
        self._down_logged: set[str] = set()
        self._next_try = 0.0
        self._full_logged = -math.inf

    @classmethod
    def from_settings(cls, s: Settings) -> LabelCache:
        """The cache the ``redis_*`` settings describe (the worker's, and the tools')."""
        return cls(
            s.redis.url,
            ttl_s=s.redis.ttl_s,
            timeout_ms=s.redis.timeout_ms,
            prefix=s.redis.key_prefix,
            password=s.redis.password.get_secret_value(),
            ssl_cafile=str(s.redis.ssl_cafile) if s.redis.ssl_cafile else None,
            cluster=s.redis.cluster,
            cluster_failover_ms=s.redis.cluster_failover_ms,
        )

    @property
    def cluster(self) -> bool:
        """True when this is a Redis Cluster: multi-key calls must stay within one slot."""
        return is_cluster(self._redis)

    # --- keys ------------------------------------------------------------------
    def image_key(self, sha256: str) -> str:
        """Redis key of an image result."""
        return f"{self.prefix}:img:{{{sha256}}}"

    def product_key(self, product_id: str) -> str:
        """Redis key of a product label."""
        return f"{self.prefix}:product:{product_id}"

    def claim_key(self, sha256: str, model_version: str) -> str:
        """Redis key of a worker's claim to infer an image with one model version."""
        return f"{self.prefix}:claim:{model_version}:{{{sha256}}}"

    # --- outage bookkeeping ------------------------------------------------------
    @property
    def available(self) -> bool:
        """False while an outage is in progress and the retry interval has not passed."""
        return self._down_since is None or time.monotonic() >= self._next_try

    def _full(self, op: str, exc: OutOfMemoryError) -> None:
        """Redis refused a write at maxmemory: count it, log it once a minute; not an outage."""
        metrics.REDIS_ERRORS.labels(op).inc()
        metrics.REDIS_FULL.labels(op).inc()
        now = time.monotonic()
        if now >= self._full_logged + 60:
            self._full_logged = now
            logger.error(
                "Redis is full (%s refused: %s): it is at maxmemory with no cache entry left "
                "to evict; raise its maxmemory or add shards. Labelling goes on; the views "
                "wait for room and catch up from the record topics",
                op,
                exc,
            )

    def _failed(self, op: str, exc: BaseException) -> None:
        metrics.REDIS_ERRORS.labels(op).inc()
        metrics.REDIS_UP.set(0)
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        kind = "refused" if _refused(exc) else "unreachable"
        if kind not in self._down_logged:
            self._down_logged.add(kind)
            if kind == "refused":
                logger.warning(
                    "Redis refused the credentials (%s: %s); check the user in redis_url "
                    "(VITRINE_REDIS_URL) and redis_password (VITRINE_REDIS_PASSWORD); "
                    "bypassing the cache until it accepts them",
                    op,
                    exc.__class__.__name__,
                )
            else:
                logger.warning(
                    "Redis unreachable (%s: %s); bypassing the cache until it answers again",
                    op,
                    exc.__class__.__name__,
                )
        self._next_try = now + self.retry_after_s

    def _succeeded(self) -> None:
        metrics.REDIS_UP.set(1)
        if self._down_since is not None:
            logger.warning(
                "Redis is back after %.1f s; caching resumed", time.monotonic() - self._down_since
            )
            self._down_since = None
            self._down_logged.clear()

    async def _mget(self, op: str, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        if not self.available:
            metrics.CACHE_BYPASSED.labels(op).inc()
            raise CacheUnavailable(f"Redis is down (since {self._down_since:.0f})")
        try:
            values = await slot_safe_mget(self._redis, keys)
        except OutOfMemoryError as exc:
            self._full(op, exc)
            raise CacheUnavailable(str(exc)) from exc
        except REDIS_ERRORS as exc:
            self._failed(op, exc)
            metrics.CACHE_BYPASSED.labels(op).inc()
            raise CacheUnavailable(str(exc)) from exc
        self._succeeded()
        return values

    # --- images ----------------------------------------------------------------
    async def get_images(
        self, hashes: Sequence[str], model_name: str, model_version: str
    ) -> list[ImageResult | None]:
        """Cached results for ``hashes`` (None = miss); all misses while Redis is down."""
        try:
            raw = await self._mget("get_images", [self.image_key(h) for h in hashes])
        except CacheUnavailable:
            return [None] * len(hashes)
        return [_result_of(value, model_name, model_version) for value in raw]

    # --- claims (one inference per new image across workers) ----------------------
    async def claim_images(
        self, hashes: Sequence[str], owner: str, model_name: str, model_version: str, ttl_ms: int
    ) -> tuple[list[bool], list[ImageResult | None]]:
        """Claim the inference of ``hashes`` (``SET NX PX``); whether each is ours, and results.

        One round trip: each claim and its holder, then the results written so
        far. A claim is ours when its holder is ``owner`` (not when ``SET NX``
        says it set the key): a pipeline resent after its first replies were
        lost (redis-py resends on a dropped connection, and on a cluster after
        a timeout too) finds its own claim, which it would otherwise wait for
        until the claim lapsed, while every other worker waited too. A result
        is written before its claim is deleted, so an image whose holder
        finished between this batch's cache lookup and its claim comes back
        with its result (and a won claim the caller should release) instead of
        being inferred twice. While Redis is down every claim is ours and
        nothing is found: the worker infers, as without claims.
        """
        if not hashes:
            return [], []

        def fill(pipe: Pipeline) -> None:
            for sha in hashes:
                key = self.claim_key(sha, model_version)
                pipe.set(key, owner, nx=True, px=ttl_ms)
                pipe.get(key)
            pipe.mget([self.image_key(sha) for sha in hashes])

        try:
            replies = await self.pipelined("claim_images", fill)
        except CacheUnavailable:
            return [True] * len(hashes), [None] * len(hashes)
        mine = owner.encode()
        won = [holder in (mine, owner) for holder in replies[1 : 2 * len(hashes) : 2]]
        return won, [_result_of(v, model_name, model_version) for v in replies[-1]]

    async def peek_claimed(
        self, hashes: Sequence[str], model_name: str, model_version: str
    ) -> tuple[list[ImageResult | None], list[bool]]:
        """The results of claimed images so far, and whether each claim still stands.

        One round trip; the claims are read before the results, so a claim that
        is gone with no result means its holder gave up (a result is written
        before its claim is deleted). Raises :class:`CacheUnavailable`.
        """

        def fill(pipe: Pipeline) -> None:
            for sha in hashes:
                pipe.exists(self.claim_key(sha, model_version))
            pipe.mget([self.image_key(sha) for sha in hashes])

        replies = await self.pipelined("peek_claimed", fill)
        held = [bool(r) for r in replies[: len(hashes)]]
        return [_result_of(v, model_name, model_version) for v in replies[-1]], held

    async def release_claims(self, hashes: Sequence[str], model_version: str) -> None:
        """Give up claims without a result (the images failed), so waiters stop waiting."""
        if not hashes:
            return

        def fill(pipe: Pipeline) -> None:
            pipe.delete(*(self.claim_key(sha, model_version) for sha in hashes))

        with contextlib.suppress(CacheUnavailable):
            await self.pipelined("release_claims", fill)

    # --- products (the view :mod:`streams.worker.views` keeps) ----------------------
    async def get_products(self, product_ids: Sequence[str]) -> list[ProductState | None]:
        """States of products (None = not in the view); raises CacheUnavailable."""
        raw = await self._mget("get_products", [self.product_key(p) for p in product_ids])
        return [None if value is None else decode_product_state(value) for value in raw]

    # --- writes ----------------------------------------------------------------
    async def put(self, images: Mapping[str, ImageResult]) -> bool:
        """Write image results (with their TTL) in one round trip; False while Redis is down."""
        if not images:
            return True

        def fill(pipe: Pipeline) -> None:
            for sha, result in images.items():
                pipe.set(self.image_key(sha), encode_image_result(result), ex=self.ttl_s)
                # After the result: a waiter that sees the claim gone finds it.
                pipe.delete(self.claim_key(sha, result.model_version))

        try:
            await self.pipelined("put", fill)
        except CacheUnavailable:
            return False
        return True

    @staticmethod
    def queue_set_many(pipe: Pipeline, values: Mapping[str, bytes]) -> None:
        """Queue writes of state keys (no TTL) on ``pipe``."""
        pipe.mset(dict(values))

    @staticmethod
    def queue_delete_many(pipe: Pipeline, keys: Sequence[str]) -> None:
        """Queue deletes of ``keys`` on ``pipe``."""
        pipe.delete(*keys)

    async def pipelined(self, op: str, fill: Callable[[Pipeline], None]) -> list[Any]:
        """Run the commands ``fill`` queues in one round trip; their replies in order.

        Raises :class:`CacheUnavailable` while Redis is down, with the same
        bookkeeping as every other operation here (counted as ``op``, the outage
        logged once); other stores that live in this Redis (recommendations) use
        it so that they share the connection pool and the outage state.
        """
        if not self.available:
            metrics.CACHE_BYPASSED.labels(op).inc()
            raise CacheUnavailable(f"Redis is down (since {self._down_since:.0f})")
        pipe = pipeline(self._redis)
        # A SlotSafePipeline takes Pipeline's commands (an MGET split per slot on a cluster).
        fill(cast(Pipeline, pipe))
        try:
            replies: list[Any] = await pipe.execute()
        except OutOfMemoryError as exc:
            self._full(op, exc)
            raise CacheUnavailable(str(exc)) from exc
        except REDIS_ERRORS as exc:
            self._failed(op, exc)
            metrics.CACHE_BYPASSED.labels(op).inc()
            raise CacheUnavailable(str(exc)) from exc
        self._succeeded()
        return replies

    async def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(await self._redis.ping())
        except REDIS_ERRORS:
            return False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
