"""The Faust app, wired from named pieces: topics, agents, the sales table, timers, web pages.

- ``label_images``: product-images -> product-labels and the review, search,
  fingerprint and dead-letter topics, in overlapping micro-batches;
- ``enrich_orders``: orders -> orders-enriched and sales deltas, through
  :class:`~streams.worker.batchconsumer.BatchConsumer` (Faust's per-event path
  costs more CPU than an order's budget);
- ``aggregate_sales``: sales deltas -> a tumbling-window table -> category-sales;
- ``apply_corrections``: label-corrections -> corrected product-labels;
- the view builder (:mod:`streams.worker.views`): the record topics -> Redis views.

:func:`create_app` only wires; the logic lives in the modules it names. Delivery
is at-least-once. Data flow and shutdown order: docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import faust
import mode
from faust.types import TP

from schemas.codec import encode
from streams.settings import Settings, get_settings
from streams.worker.batchconsumer import BatchConsumer
from streams.worker.batches import BatchStep, handle_batch, run_batches
from streams.worker.consumed import ConsumedRecord, Rejected, from_faust_event
from streams.worker.corrections import CorrectionsView, check_correction, corrected_record
from streams.worker.delivery import Delivery
from streams.worker.follower import TopicFollower, V
from streams.worker.holes import Hole, OffsetWatch, committed_offset, in_order, read_range
from streams.worker.integrity import IntegrityView
from streams.worker.kafka_config import aiokafka_config, faust_credentials, group_membership
from streams.worker.lag import record_consumer_lag
from streams.worker.routes import route, sales_deltas
from streams.worker.runtime import Runtime
from streams.worker.search import EmbeddingFollower, SearchIndex
from streams.worker.topics import Topics
from streams.worker.transport import VitrineApp
from streams.worker.views import ViewBuilder
from streams.worker.web import add_pages
from streams.worker.windows import SalesAggregation

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

#: Seconds the labelling agent may sit idle while a partition holds records it
#: never received before the partition is sought back to them (holes.StallWatch).
_STALL_AFTER_S = 10.0


def _faust_app(s: Settings) -> VitrineApp:
    app = VitrineApp(
        s.kafka.app_id,
        broker=["kafka://" + h for h in s.kafka.brokers],
        broker_credentials=faust_credentials(s),
        store="memory://",
        datadir=str(s.state_dir / "faust"),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=s.topics.partitions,
        topic_replication_factor=s.topics.replication_factor,
        topic_allow_declare=True,
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_linger_ms=2,
        # aiokafka makes send() wait for a full partition batch to drain; with
        # the default 16 KiB that paces output by broker round trips every ~20
        # records (measured: ~600 enriched orders/s). One MiB batches remove it.
        producer_max_batch_size=1024 * 1024,
        producer_max_request_size=s.kafka.max_message_bytes + 64 * 1024,
        producer_compression_type=(
            None if s.kafka.compression_type == "none" else s.kafka.compression_type
        ),
        consumer_auto_offset_reset="earliest",
        # Static membership and a session timeout shorter than Faust's 60 s: a
        # worker killed and started again resumes at once (docs/OPERATIONS.md,
        # "Restarts and consumer groups").
        consumer_group_instance_id=s.group_instance_id,
        broker_session_timeout=s.kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=s.kafka.heartbeat_interval_ms / 1000,
        stream_wait_empty=True,
        agent_supervisor=mode.CrashingSupervisor,
        web_host=s.web.host,
        web_port=s.web.port,
        web_in_thread=False,
        # POST /similar takes an image: as large as a listing's may be (aiohttp: 1 MiB).
        web_application_options={"client_max_size": s.images.max_image_bytes + 64 * 1024},
        table_cleanup_interval=60.0,
    )
    app.shutdown_timeout_s = s.shutdown_timeout_s
    app.settings = s
    app.fetch_max_wait_ms = s.kafka.fetch_max_wait_ms
    logger.info(
        "consumer groups: instance id %s, session timeout %d ms",
        s.group_instance_id or "none (dynamic membership)", s.kafka.session_timeout_ms,
    )  # fmt: skip
    return app


def _add_label_images(
    app: faust.App, topics: Topics, runtime: Runtime, delivery: Delivery, s: Settings
) -> Any:
    """``label_images``: product-images -> product-labels, in overlapping micro-batches."""

    @app.agent(topics.images, name="label_images")
    async def label_images(stream: Any) -> None:
        rt = await runtime.ready()
        step = BatchStep(
            agent="label_images",
            out_topic=s.topics.product_labels,
            process=rt.labeller.process,
            route=route(
                delivery,
                topics.labels.get_topic_name(),
                topics.images_dlq.get_topic_name(),
                review=topics.review.get_topic_name(),
                listing_review=topics.listing_review.get_topic_name(),
                embeddings=topics.embeddings.get_topic_name(),
                fingerprints=topics.fingerprints.get_topic_name(),
            ),
            check=rt.labeller.check_integrity,
            remember=rt.labeller.remember,
        )

        async def handle(records: list[ConsumedRecord], after: Awaitable[Any] | None) -> None:
            await handle_batch(step, records, delivery, after)

        await run_batches(
            stream, handle, max_size=s.model.max_batch_size,
            max_latency_ms=s.model.max_batch_latency_ms, in_flight=s.model.image_batches_in_flight,
            refetch=functools.partial(read_range, aiokafka_config(s)),
            stall_after_s=_STALL_AFTER_S,
        )  # fmt: skip

    return label_images


def _order_consumer(
    topics: Topics, runtime: Runtime, delivery: Delivery, s: Settings
) -> BatchConsumer:
    """``enrich_orders``: orders -> orders-enriched + sales deltas, through a batch consumer.

    Orders bypass Faust's per-event stream machinery (see
    :mod:`streams.worker.batchconsumer`); the runtime is built before it starts.
    """
    step_: list[BatchStep] = []

    async def enrich_orders(records: list[ConsumedRecord]) -> None:
        if not step_:
            step_.append(
                BatchStep(
                    agent="enrich_orders",
                    out_topic=s.topics.orders_enriched,
                    process=runtime.enricher.process,
                    route=route(
                        delivery,
                        topics.enriched.get_topic_name(),
                        topics.orders_dlq.get_topic_name(),
                    ),
                    batch_outputs=sales_deltas(
                        delivery, topics.deltas.get_topic_name(), s.orders.sales_window_s
                    ),
                )
            )
        await handle_batch(step_[0], records, delivery)

    return BatchConsumer(
        topics=[s.topics.orders],
        group_id=s.kafka.order_consumer_group,
        handle=enrich_orders,
        client_config=aiokafka_config(s),
        max_records=s.orders.max_batch_size,
        max_latency_ms=s.orders.max_batch_latency_ms,
        before_start=runtime.ready,
        # Orders were consumed in the Faust group before: start where it stopped.
        inherit_offsets_from=s.kafka.app_id,
        membership=group_membership(s),
    )


def _watch(app: faust.App) -> OffsetWatch:
    """An offset watch that counts a new generation from Faust's committed offsets."""
    return OffsetWatch(functools.partial(committed_offset, app))


def _seeker(app: faust.App) -> Callable[[Hole], Awaitable[None]]:
    async def seek(hole: Hole) -> None:
        await app.consumer.seek(TP(hole.topic, hole.partition), hole.start)

    return seek


def _add_sales(app: faust.App, topics: Topics, delivery: Delivery, s: Settings) -> Any:
    """``aggregate_sales``: the deltas -> a tumbling-window table -> category-sales (a timer)."""
    sales = SalesAggregation(app, s, delivery, topics.deltas.get_topic_name())

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def sales_partitions_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        sales.on_revoked()

    @app.agent(topics.deltas, name="aggregate_sales")
    async def aggregate_sales(stream: Any) -> None:
        await sales.aggregate(in_order(stream.events(), _watch(app), _seeker(app)))

    @app.timer(interval=1.0, name="emit_category_sales")
    async def emit_category_sales() -> None:
        await sales.emit()

    return aggregate_sales


def _add_apply_corrections(app: faust.App, topics: Topics, delivery: Delivery) -> Any:
    """``apply_corrections``: each label decision -> its product's corrected product-labels.

    One worker applies each decision (the group's); its offset is acked only once
    the corrected label is confirmed. Every worker also reads the whole topic into
    its :class:`CorrectionsView` (:func:`_corrections_follower`).
    """
    labels = topics.labels.get_topic_name()
    dead = topics.corrections_dlq.get_topic_name()

    @app.agent(topics.corrections, name="apply_corrections")
    async def apply_corrections(stream: Any) -> None:
        # Compacted: its offsets have gaps; only each generation's first event is checked.
        events = in_order(stream.events(), _watch(app), _seeker(app), first_only=True)
        async for event in events:
            correction = check_correction(from_faust_event(event))
            if isinstance(correction, Rejected):
                logger.warning("dead-lettering a label-corrections value: %s (%s)",
                               correction.code, correction.message)  # fmt: skip
                await delivery.deliver([delivery.dead_letter(dead, correction)], dead)
                continue
            if correction is None:
                continue
            record = corrected_record(correction, datetime.now(UTC))
            if record is not None:
                send = delivery.record(labels, correction.product_id.encode(), encode(record))
                await delivery.deliver([send], labels)
                logger.info(
                    "applied %s of %s by %s (%s)",
                    correction.decision, correction.product_id, correction.reviewer,
                    correction.event_id,
                )  # fmt: skip

    return apply_corrections


def _add_lag_timer(app: faust.App, topics: Topics, order_consumer: BatchConsumer) -> None:
    """Every 5 s, the records behind the end of each input partition (:mod:`.lag`)."""
    inputs = {topics.images.get_topic_name(), topics.deltas.get_topic_name()}

    @app.timer(interval=5.0, name="consumer_lag")
    async def consumer_lag() -> None:
        await record_consumer_lag(app.consumer, inputs, order_consumer)


def _search_follower(topics: Topics, runtime: Runtime, s: Settings) -> EmbeddingFollower:
    """Every worker's search index, read from the whole product-embeddings topic."""

    async def build() -> SearchIndex | None:
        rt = await runtime.ready()
        if rt.projection is None:
            return None
        return SearchIndex(
            rt.projection.dims, rt.engine.model_version, expansion_search=s.search.expansion
        )

    return EmbeddingFollower(
        topic=topics.embeddings.get_topic_name(),
        client_config=aiokafka_config(s),
        build=build,
        snapshot=s.search.snapshot_dir,
    )


def _view_builder(topics: Topics, runtime: Runtime, s: Settings) -> ViewBuilder:
    """The Redis views of product-labels and orders-enriched, kept by every worker's share."""
    views = ViewBuilder(
        labels_topic=topics.labels.get_topic_name(),
        orders_topic=topics.enriched.get_topic_name(),
        cache=runtime.cache,
        recommender=runtime.recommender,
        client_config=aiokafka_config(s),
        group_id=s.kafka.views_consumer_group,
        membership=group_membership(s),
    )
    runtime.coverage = views
    return views


def _whole_topic_follower(
    name: str, topic: faust.TopicT, runtime: Runtime, s: Settings, view: V
) -> TopicFollower[V]:
    """Every worker's ``view`` of a whole topic: listing fingerprints, label corrections."""

    async def build() -> V:
        await runtime.ready()
        # A topic the runtime or an agent declares, perhaps later: a follower
        # that started before the topic existed would not see it for minutes.
        await topic.maybe_declare()
        return view

    return TopicFollower(
        name=name, topic=topic.get_topic_name(), client_config=aiokafka_config(s), build=build
    )


def create_app(settings: Settings | None = None) -> VitrineApp:
    """Build the worker's Faust app for ``settings`` (default: from the environment)."""
    s = settings or get_settings()
    app = _faust_app(s)
    topics = Topics.on(app, s)
    delivery = Delivery(app)
    view = IntegrityView()
    corrections = CorrectionsView()
    app.runtime = runtime = Runtime(
        s, declare=topics.outputs, integrity=view, corrections=corrections
    )
    _add_label_images(app, topics, runtime, delivery, s)
    app.order_consumer = order_consumer = _order_consumer(topics, runtime, delivery, s)
    app.service(order_consumer)  # type: ignore[arg-type]
    _add_sales(app, topics, delivery, s)
    _add_apply_corrections(app, topics, delivery)
    _add_lag_timer(app, topics, order_consumer)
    app.search = search = _search_follower(topics, runtime, s)
    app.service(search)  # type: ignore[arg-type]
    app.integrity = integrity = _whole_topic_follower(
        "integrity", topics.fingerprints, runtime, s, view
    )
    runtime.integrity_loaded = integrity.caught_up
    app.service(integrity)  # type: ignore[arg-type]
    app.corrections = corrected = _whole_topic_follower(
        "corrections", topics.corrections, runtime, s, corrections
    )
    runtime.corrections_loaded = corrected.caught_up
    app.service(corrected)  # type: ignore[arg-type]
    app.views = views = _view_builder(topics, runtime, s)
    app.service(views)  # type: ignore[arg-type]
    add_pages(app, runtime, order_consumer, app.unreadable, search, integrity, views, corrected)
    return app
