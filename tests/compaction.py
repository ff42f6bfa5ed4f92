"""Make Kafka's log cleaner compact a topic now, on the real test broker, and wait for it.

The cleaner only cleans closed segments, which never close during a test on their
own. A test of what survives compaction calls :func:`force_compaction`, which sets
the topic's configs for an immediate clean, rolls each partition's active segment
by appending a copy of its last record (so every key's latest value is unchanged),
waits until no key appears twice below the copies, and puts the configs back; then
the test reads the topic as a consumer would. Details: docs/DELIVERY.md ("Every
window survives compaction").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType

__all__ = ["COMPACTION_CONFIGS", "Compaction", "force_compaction"]

COMPACTION_CONFIGS: Mapping[str, str] = {
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}
"""Topic configs set while :func:`force_compaction` runs (put back after)."""

_REROLL_S = 5.0  # roll again if the cleaner has not caught up by then (see _roll)


@dataclass(frozen=True)
class Compaction:
    """What :func:`force_compaction` saw: records below the roll points, before and after."""

    records_before: int
    records_after: int

    @property
    def removed(self) -> int:
        """Records the cleaner removed (superseded updates and expired tombstones)."""
        return self.records_before - self.records_after


def force_compaction(
    bootstrap: str,
    topic: str,
    *,
    timeout_s: float = 120,
    security: Mapping[str, Any] | None = None,
) -> Compaction:
    """Make the log cleaner compact ``topic`` and return once it has.

    ``topic`` must already have ``cleanup.policy`` including ``compact``
    (ValueError otherwise: forcing it on would delete data the topic keeps).
    Afterwards every record that was on the topic when this was called and is
    superseded by a later record of its key is gone when the topic is read from
    the beginning; the latest record of every key is still there (the last one of
    each partition twice: see the module docstring). The topic's configs are put
    back to what they were, so later writes are not compacted eagerly.

    Writers may keep writing meanwhile; their records after the call are not
    waited for. ``security``: kafka-python's security keywords for a secured
    listener. Raises TimeoutError, naming the partition and what is left, if
    the cleaner has not finished within ``timeout_s``.
    """
    client = {"bootstrap_servers": bootstrap, **(security or {})}
    admin = KafkaAdminClient(**client, client_id="vitrine-force-compaction")
    producer = KafkaProducer(**client, acks="all", max_request_size=16 * 1024 * 1024)
    consumer = KafkaConsumer(
        **client, enable_auto_commit=False, max_partition_fetch_bytes=16 * 1024 * 1024
    )
    deadline = time.monotonic() + timeout_s
    try:
        effective, previous = _configs(admin, topic)
        policy = effective.get("cleanup.policy", "delete")
        if "compact" not in policy:
            raise ValueError(
                f"topic {topic} has cleanup.policy={policy}; force_compaction needs a"
                " compacted topic (create it with cleanup.policy=compact)"
            )
        _alter(admin, topic, {k: (AlterConfigOp.SET, v) for k, v in COMPACTION_CONFIGS.items()})
        try:
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            before = {tp: _read(consumer, tp, deadline) for tp in partitions}
            bounds = _roll(producer, consumer, before, deadline)
            records_before = sum(len(before[tp]) for tp in bounds)
            records_after = _wait_compacted(producer, consumer, bounds, deadline, timeout_s)
        finally:
            _alter(
                admin,
                topic,
                {
                    k: (AlterConfigOp.SET, previous[k])
                    if k in previous
                    else (AlterConfigOp.DELETE, None)
                    for k in COMPACTION_CONFIGS
                },
            )
    finally:
        consumer.close()
        producer.close()
        admin.close()
    return Compaction(records_before, records_after)


def _configs(admin: KafkaAdminClient, topic: str) -> tuple[dict[str, str], dict[str, str]]:
    """The topic's effective configs, and those set on the topic itself (its overrides)."""
    found = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
    )
    entries = found["topic"][topic]
    values = {k: e["value"] for k, e in entries.items() if e.get("value") is not None}
    overrides = {
        k: v for k, v in values.items() if entries[k]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    }
    return values, overrides


def _alter(admin: KafkaAdminClient, topic: str, configs: dict[str, Any]) -> None:
    result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
    status = result["topic"][topic]
    if status != "OK":
        raise RuntimeError(f"altering the configs of {topic} failed: {status}")


def _read(consumer: KafkaConsumer, tp: TopicPartition, deadline: float) -> list[Any]:
    """Every record of ``tp`` from the beginning to its current end."""
    end = consumer.end_offsets([tp])[tp]
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    out: list[Any] = []
    while consumer.position(tp) < end:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {tp.topic}[{tp.partition}] to offset {end} timed out")
        out.extend(consumer.poll(timeout_ms=500).get(tp, []))
    return out


def _roll(
    producer: KafkaProducer,
    consumer: KafkaConsumer,
    records: Mapping[TopicPartition, list[Any]],
    deadline: float,
) -> dict[TopicPartition, int]:
    """Close the active segment of every non-empty partition; the copies' offsets.

    A segment rolls when a record arrives more than ``segment.ms`` after the
    segment's first one. The copy of the partition's last record is kept only
    if it landed right after that record, so it is the latest of its key and
    holds the latest value; if a writer got in between, the new last record is
    copied instead.
    """
    time.sleep(float(COMPACTION_CONFIGS["segment.ms"]) / 1000 * 3)
    bounds: dict[TopicPartition, int] = {}
    for tp, recs in records.items():
        last = recs[-1] if recs else None
        while last is not None:
            sent = producer.send(
                tp.topic,
                key=last.key,
                value=last.value,
                headers=list(last.headers or []),
                partition=tp.partition,
            ).get(timeout=30)
            if sent.offset == last.offset + 1:
                bounds[tp] = sent.offset
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"rolling {tp.topic}[{tp.partition}] timed out")
            last = _read(consumer, tp, deadline)[-1]
    return bounds


def _wait_compacted(
    producer: KafkaProducer,
    consumer: KafkaConsumer,
    bounds: Mapping[TopicPartition, int],
    deadline: float,
    timeout_s: float,
) -> int:
    """Wait until no key repeats below each partition's bound; the records left there."""
    rolled_at = time.monotonic()
    while True:
        left = {
            tp: [r for r in _read(consumer, tp, deadline) if r.offset < bound]
            for tp, bound in bounds.items()
        }
        dirty = {
            tp: len(recs) - len({r.key for r in recs})
            for tp, recs in left.items()
            if len(recs) != len({r.key for r in recs})
        }
        if not dirty:
            return sum(len(recs) for recs in left.values())
        if time.monotonic() > deadline:
            tp, extra = next(iter(dirty.items()))
            raise TimeoutError(
                f"{tp.topic}[{tp.partition}] still holds {extra} superseded records below"
                f" offset {bounds[tp]} after {timeout_s:.0f} s (timeout_s); is the broker's"
                " log cleaner running (log.cleaner.enable) and log.cleaner.backoff.ms low?"
            )
        if time.monotonic() - rolled_at > _REROLL_S:
            # A writer's record may have rolled the segment before our copy did, leaving
            # records below the bound in the active segment; a new roll closes it.
            _roll(producer, consumer, {tp: _read(consumer, tp, deadline) for tp in dirty}, deadline)
            rolled_at = time.monotonic()
        time.sleep(0.5)
