"""A reviewed listing's photo, fetched from Kafka by the place the review record gives.

A review record carries no image, but its ``source`` names the listing's
topic, partition and offset on ``product-images``: one consumer (outside any
group) seeks there and reads that one record; an ``image_uri`` listing is
fetched under the worker's own policy (:mod:`streams.worker.fetch`). The bytes
are served only if their sha256 is the photo that was labelled. Recent photos
are kept in a small LRU, so paging back and forth costs no fetch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict

from aiokafka import AIOKafkaConsumer, TopicPartition

from inference.serving.decode import sniff_format
from inference.serving.errors import ImageError
from schemas import codec
from schemas.errors import SchemaError
from schemas.records import ListingSource
from streams.settings import Settings
from streams.worker.fetch import FetchError, FetchPolicy, ImageFetcher
from streams.worker.kafka_config import aiokafka_config

__all__ = ["Photo", "PhotoError", "Photos"]

logger = logging.getLogger(__name__)

Photo = tuple[bytes, str]  # the bytes and their media type


class PhotoError(Exception):
    """The photo cannot be shown; the message says why."""


class Photos:
    """Fetches photos by listing source; keeps the latest ``cache_size`` of them."""

    def __init__(self, settings: Settings, cache_size: int = 256, timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._cache: OrderedDict[str, Photo] = OrderedDict()
        self._cache_size = cache_size
        #: sha256 -> a listing with that photo (items' own and their duplicates').
        self.sources: OrderedDict[str, ListingSource] = OrderedDict()
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._fetcher = ImageFetcher(FetchPolicy.from_settings(settings))

    def know(self, sha256: str, source: ListingSource | None) -> None:
        """Remember where a photo is (bounded: the oldest are forgotten)."""
        if source is None:
            return
        self.sources[sha256] = source
        self.sources.move_to_end(sha256)
        while len(self.sources) > 100_000:
            self.sources.popitem(last=False)

    async def close(self) -> None:
        """Close the consumer and the URI fetcher."""
        if self._consumer is not None:
            await self._consumer.stop()
        await self._fetcher.close()

    async def get(self, sha256: str) -> Photo:
        """The photo with this sha256, as bytes and media type; PhotoError if unavailable."""
        hit = self._cache.get(sha256)
        if hit is not None:
            self._cache.move_to_end(sha256)
            return hit
        source = self.sources.get(sha256)
        if source is None:
            raise PhotoError("no listing of this photo is known to the console")
        raw = await self._read(source)
        if hashlib.sha256(raw).hexdigest() != sha256:
            raise PhotoError(f"the listing at {_where(source)} holds another photo")
        try:
            photo = (raw, f"image/{sniff_format(raw)}")
        except ImageError as exc:
            raise PhotoError(str(exc)) from None
        self._cache[sha256] = photo
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return photo

    async def _read(self, source: ListingSource) -> bytes:
        async with self._lock:  # one seek at a time on the one consumer
            value = await self._record(source)
        try:
            event = codec.decode_product_image(value)
            if event.image_uri is not None:
                return await self._fetcher.fetch(event.image_uri)
            return codec.decode_inline_image(event, max_bytes=self.settings.images.max_image_bytes)
        except (SchemaError, FetchError) as exc:
            raise PhotoError(f"the listing at {_where(source)}: {exc}") from None

    async def _record(self, source: ListingSource) -> bytes:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                **{**aiokafka_config(self.settings), "client_id": "vitrine-console-photos"},
                group_id=None,
                enable_auto_commit=False,
            )
            await self._consumer.start()
        consumer = self._consumer
        tp = TopicPartition(source.topic, source.partition)
        consumer.assign([tp])
        consumer.seek(tp, source.offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while loop.time() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=200, max_records=1)
            for rec in batch.get(tp, []):
                if rec.offset == source.offset and rec.value is not None:
                    return bytes(rec.value)
                if rec.offset >= source.offset:
                    raise PhotoError(f"the listing at {_where(source)} is no longer on Kafka")
        raise PhotoError(f"the listing at {_where(source)} did not arrive in {self.timeout_s} s")


def _where(source: ListingSource) -> str:
    return f"{source.topic}[{source.partition}]@{source.offset}"
