"""The worker's topics, declared once: names, cleanup policy and retention.

:data:`TOPICS` is the one list. The worker declares it on its Faust app
(:class:`Topics`), the local stack creates it (:func:`topic_partitions`,
:func:`topic_configs`) and test helpers name their own copies of it
(:func:`topic_settings`). Faust declares two more topics itself: the sales
window table's changelog and its assignor's leader topic
(docs/ARCHITECTURE.md, "Topics").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from streams.settings import Settings, TopicSettings

if TYPE_CHECKING:
    import faust

__all__ = [
    "TOPICS",
    "TopicSpec",
    "Topics",
    "topic_configs",
    "topic_partitions",
    "topic_settings",
]


@dataclass(frozen=True)
class TopicSpec:
    """One topic: how it is named, kept and declared."""

    #: Its field on :class:`Topics`.
    field: str
    #: Its field of :class:`TopicSettings` (``product_images``, read from
    #: ``VITRINE_TOPIC_PRODUCT_IMAGES``); ``None`` for the worker's internal
    #: topics, named after ``kafka.app_id``.
    setting: str | None
    #: Internal topics only: the name from ``kafka.app_id``.
    internal_name: Callable[[Settings], str] | None = None
    #: ``cleanup.policy`` includes ``compact``: a record replaces the earlier ones of its key.
    compact: bool = False
    #: Records are also deleted after this long (``compact,delete`` when compacted).
    retention: Callable[[Settings], timedelta] | None = None
    #: An agent subscribes to it, so Faust declares it; the runtime declares the others.
    agent_input: bool = False

    def name(self, s: Settings) -> str:
        """The topic's name under ``s``."""
        if self.setting is not None:
            return str(getattr(s.topics, self.setting))
        assert self.internal_name is not None
        return self.internal_name(s)

    def config(self, s: Settings) -> dict[str, str]:
        """Its Kafka topic configuration beyond the broker's defaults."""
        policy = [p for p, on in (("compact", self.compact), ("delete", self.retention)) if on]
        if policy == ["delete"]:
            policy = []  # the broker's default
        config = {"cleanup.policy": ",".join(policy)} if policy else {}
        if self.retention is not None:
            config["retention.ms"] = str(int(self.retention(s).total_seconds() * 1000))
        return config


def _history(s: Settings) -> timedelta:
    # Compacted (one record per order) and deleted after the history the
    # recommendations count.
    return timedelta(days=s.recommend.history_days)


#: Every topic the worker reads or writes, but Faust's own.
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("images", "product_images", agent_input=True),
    TopicSpec("orders", "orders"),
    # The records the Redis views are rebuilt from (streams.worker.views).
    TopicSpec("labels", "product_labels", compact=True),
    TopicSpec("enriched", "orders_enriched", compact=True, retention=_history),
    # Keyed category|region|window_start: compaction keeps every window's latest value.
    TopicSpec("sales", "category_sales", compact=True),
    TopicSpec("images_dlq", "product_images_dlq"),
    TopicSpec("orders_dlq", "orders_dlq"),
    TopicSpec("review", "product_review"),
    TopicSpec("listing_review", "listing_review"),
    # Never compacted: each record is a delta to add. The runtime declares it
    # too, so that the order consumer can write it before aggregate_sales starts.
    TopicSpec("deltas", None, internal_name=lambda s: f"{s.kafka.app_id}-sales-deltas"),
    TopicSpec("embeddings", "product_embeddings", compact=True),
    # The integrity index's record.
    TopicSpec("fingerprints", "listing_fingerprints", compact=True),
    # Reviewers' decisions: a product's latest label decision and every duplicate
    # pair's latest decision (schemas.corrections.correction_key), for good.
    TopicSpec("corrections", "label_corrections", compact=True, agent_input=True),
    TopicSpec("corrections_dlq", "label_corrections_dlq"),
)


def topic_partitions(s: Settings) -> dict[str, int]:
    """The topics named by settings (the ones created in advance) and their partition counts."""
    return {t.name(s): s.topics.partitions for t in TOPICS if t.setting is not None}


def topic_configs(s: Settings) -> dict[str, dict[str, str]]:
    """Every topic's configuration beyond the broker's defaults (cleanup policy, retention)."""
    return {t.name(s): c for t in TOPICS if (c := t.config(s))}


def topic_settings() -> dict[str, str]:
    """Each topic setting (``product_images``) -> its default name."""
    defaults = TopicSettings.model_fields
    return {t.setting: str(defaults[t.setting].default) for t in TOPICS if t.setting is not None}


@dataclass(frozen=True)
class Topics:
    """The worker's topics, declared on its app (one field per entry of :data:`TOPICS`)."""

    images: faust.TopicT
    orders: faust.TopicT
    labels: faust.TopicT
    enriched: faust.TopicT
    sales: faust.TopicT
    images_dlq: faust.TopicT
    orders_dlq: faust.TopicT
    #: Labelled products the model could not place (low confidence, unknown product).
    review: faust.TopicT
    #: Labelled listings with an integrity flag (duplicates, category mismatch).
    listing_review: faust.TopicT
    #: Internal: per-order sales deltas keyed ``category|region``, for the window table.
    deltas: faust.TopicT
    #: Compacted: each product's search descriptor (read whole by every worker).
    embeddings: faust.TopicT
    #: Compacted: each seller's first listing of each photo, with its fingerprint
    #: (read whole by every worker into its integrity index).
    fingerprints: faust.TopicT
    #: Compacted: reviewers' decisions (applied by one worker, read whole by every worker).
    corrections: faust.TopicT
    #: label-corrections values that are no decision, with the reason.
    corrections_dlq: faust.TopicT

    @classmethod
    def on(cls, app: faust.App, s: Settings) -> Topics:
        """Declare every topic of :data:`TOPICS` on ``app`` with its policy and partitions."""

        def topic(spec: TopicSpec) -> faust.TopicT:
            kw: dict[str, Any] = {}
            if spec.compact:
                kw["compacting"] = True
            if spec.retention is not None:
                kw.update(deleting=True, retention=spec.retention(s))
            return app.topic(spec.name(s), internal=True, partitions=s.topics.partitions, **kw)

        return cls(**{spec.field: topic(spec) for spec in TOPICS})

    @property
    def outputs(self) -> list[faust.TopicT]:
        """The topics the runtime declares at start: all but the agents' inputs."""
        return [getattr(self, t.field) for t in TOPICS if not t.agent_input]
