"""The Faust app: topics, agents, the sales table, timers and web pages.

Agents:

- ``label_images`` (Faust agent): product-images -> product-labels
  (+ product-images.dlq; flagged labels also to product-review and
  listing-review), in micro-batches (:mod:`streams.worker.batcher`), inference
  off the event loop. Two batches overlap (``image_batches_in_flight``): one is
  in the model while the next is parsed and looked up and the previous one is
  cached and produced; the cache writes and outputs stay in input order.
- ``enrich_orders``: orders -> orders-enriched (+ orders.dlq), and per-order
  sales deltas to an internal topic keyed ``category|region``. It consumes
  through :class:`~streams.worker.batchconsumer.BatchConsumer`, a service of this app
  with its own consumer group, because Faust's per-event stream path alone
  costs more CPU than an order's budget (measurements in that module).
- ``aggregate_sales`` (Faust agent): the internal topic -> a tumbling-window
  table -> category-sales (changed windows emitted by a timer).
- the view builder (:mod:`streams.worker.views`, a service with its own
  consumer group): product-labels and orders-enriched, the record topics, into
  the Redis views that enrichment and recommendations read.

Delivery is at-least-once: a batch's events are acked (or, for orders,
committed) only after every output of the batch (labels, enriched orders, dead
letters) is confirmed by the broker, and Faust commits only acked offsets. On
SIGTERM the order consumer finishes its batch and commits first, while Redis and
the producer are still up; then Faust stops fetching, waits until every fetched
event is acked (so the in-flight batches finish and are produced), commits, and
exits.

All values are raw bytes on the wire; decoding is ours (:mod:`schemas.codec`),
so a bad value becomes a dead letter instead of a Faust decode error.

:func:`create_app` only wires named pieces: the Faust app and transport
(:mod:`streams.worker.transport`), the topics (:class:`Topics`), delivery
(:mod:`streams.worker.delivery`), the batch runner (:mod:`streams.worker.batches`),
the shared runtime (:mod:`streams.worker.runtime`) and the web pages
(:mod:`streams.worker.web`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import faust
import mode

from streams.settings import Settings, get_settings
from streams.worker import metrics
from streams.worker.batchconsumer import BatchConsumer
from streams.worker.batches import BatchStep, handle_batch, run_batches
from streams.worker.consumed import ConsumedRecord, Rejected
from streams.worker.delivery import Delivery, Send
from streams.worker.enrich import Enriched
from streams.worker.follower import TopicFollower
from streams.worker.integrity import IntegrityView
from streams.worker.kafka_config import aiokafka_config, faust_credentials, group_membership
from streams.worker.labelling import Labelled
from streams.worker.runtime import Runtime
from streams.worker.search import EmbeddingFollower, SearchIndex
from streams.worker.transport import VitrineApp
from streams.worker.views import ViewBuilder
from streams.worker.web import add_pages
from streams.worker.windows import (
    EventTimeWindow,
    SalesAggregate,
    SalesWindows,
    decode_delta,
    encode_delta,
    merge_deltas,
)

__all__ = ["Topics", "create_app"]

logger = logging.getLogger(__name__)


def _faust_app(s: Settings) -> VitrineApp:
    app = VitrineApp(
        s.app_id,
        broker=["kafka://" + h for h in s.kafka_brokers],
        broker_credentials=faust_credentials(s),
        store="memory://",
        datadir=str(s.state_dir / "faust"),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=s.topic_partitions,
        topic_replication_factor=s.topic_replication_factor,
        topic_allow_declare=True,
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_linger_ms=2,
        # aiokafka makes send() wait for a full partition batch to drain; with
        # the default 16 KiB that paces output by broker round trips every ~20
        # records (measured: ~600 enriched orders/s). One MiB batches remove it.
        producer_max_batch_size=1024 * 1024,
        producer_max_request_size=s.kafka_max_message_bytes + 64 * 1024,
        producer_compression_type=(
            None if s.kafka_compression_type == "none" else s.kafka_compression_type
        ),
        consumer_auto_offset_reset="earliest",
        # Static membership and a session timeout shorter than Faust's 60 s: a
        # worker killed and started again resumes at once (docs/OPERATIONS.md,
        # "Restarts and consumer groups").
        consumer_group_instance_id=s.group_instance_id,
        broker_session_timeout=s.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=s.kafka_heartbeat_interval_ms / 1000,
        stream_wait_empty=True,
        agent_supervisor=mode.CrashingSupervisor,
        web_host=s.web_host,
        web_port=s.web_port,
        web_in_thread=False,
        # POST /similar takes an image: as large as a listing's may be (aiohttp: 1 MiB).
        web_application_options={"client_max_size": s.max_image_bytes + 64 * 1024},
        table_cleanup_interval=60.0,
    )
    app.shutdown_timeout_s = s.shutdown_timeout_s
    app.settings = s
    app.fetch_max_wait_ms = s.kafka_fetch_max_wait_ms
    logger.info(
        "consumer groups: instance id %s, session timeout %d ms",
        s.group_instance_id or "none (dynamic membership)", s.kafka_session_timeout_ms,
    )  # fmt: skip
    return app


@dataclass(frozen=True)
class Topics:
    """The worker's topics, declared on its app (names from the ``topic_*`` settings)."""

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

    @classmethod
    def on(cls, app: faust.App, s: Settings) -> Topics:
        """Declare every topic on ``app`` with the configured names and partitions."""

        def topic(name: str, **kw: Any) -> faust.TopicT:
            return app.topic(name, internal=True, partitions=s.topic_partitions, **kw)

        return cls(
            images=topic(s.topic_product_images),
            orders=topic(s.topic_orders),
            # The records the Redis views are rebuilt from (streams.worker.views).
            labels=topic(s.topic_product_labels, compacting=True),
            enriched=topic(
                s.topic_orders_enriched,
                compacting=True,
                deleting=True,
                retention=timedelta(days=s.recommend_history_days),
            ),
            sales=topic(s.topic_category_sales, compacting=True),
            images_dlq=topic(s.topic_product_images_dlq),
            orders_dlq=topic(s.topic_orders_dlq),
            review=topic(s.topic_product_review),
            listing_review=topic(s.topic_listing_review),
            deltas=topic(f"{s.app_id}-sales-deltas"),
            embeddings=topic(s.topic_product_embeddings, compacting=True),
            fingerprints=topic(s.topic_listing_fingerprints, compacting=True),
        )

    @property
    def outputs(self) -> list[faust.TopicT]:
        """Topics no agent subscribes to, which the runtime declares at start."""
        return [
            self.orders, self.labels, self.enriched, self.sales,
            self.images_dlq, self.orders_dlq, self.review, self.listing_review, self.deltas,
            self.embeddings, self.fingerprints,
        ]  # fmt: skip


def _routes(
    delivery: Delivery,
    ok: faust.TopicT,
    dlq: faust.TopicT,
    review: faust.TopicT | None = None,
    listing_review: faust.TopicT | None = None,
    embeddings: faust.TopicT | None = None,
    fingerprints: faust.TopicT | None = None,
) -> Any:
    """A route: a result to its output record, to the review topics when flagged, its descriptor.

    A labelled listing new to the integrity index also goes to listing-fingerprints.

    A rejection goes to its dead letter.
    """
    ok_name, dlq_name = ok.get_topic_name(), dlq.get_topic_name()
    review_name = review.get_topic_name() if review is not None else None
    listing_name = listing_review.get_topic_name() if listing_review is not None else None
    embeddings_name = embeddings.get_topic_name() if embeddings is not None else None
    fingerprints_name = fingerprints.get_topic_name() if fingerprints is not None else None

    def route(res: Labelled | Enriched | Rejected) -> list[Send]:
        if isinstance(res, Rejected):
            return [delivery.dead_letter(dlq_name, res)]
        sends = [delivery.record(ok_name, res.key, res.value)]
        if isinstance(res, Labelled):
            if review_name is not None and res.review:
                sends.append(delivery.record(review_name, res.key, res.value))
            if listing_name is not None and res.listing_review:
                sends.append(delivery.record(listing_name, res.key, res.value))
            if embeddings_name is not None and res.embedding:
                sends.append(delivery.record(embeddings_name, res.key, res.embedding))
            if fingerprints_name is not None and res.integrity_record is not None:
                sends.append(delivery.record(fingerprints_name, *res.integrity_record))
        return sends

    return route


def _sales_deltas(delivery: Delivery, deltas: faust.TopicT, window_s: int) -> Any:
    """The order batch's sales, merged per ``category|region`` and window, to the deltas topic."""
    name = deltas.get_topic_name()

    def outputs(results: list[Enriched | Rejected]) -> list[Send]:
        merged = merge_deltas(
            (d for res in results if isinstance(res, Enriched) for d in res.deltas), window_s
        )
        return [delivery.record(name, d.key.encode(), encode_delta(d)) for d in merged]

    return outputs


def _add_label_images(
    app: faust.App, topics: Topics, runtime: Runtime, delivery: Delivery, s: Settings
) -> Any:
    """``label_images``: product-images -> product-labels, in overlapping micro-batches."""

    @app.agent(topics.images, name="label_images")
    async def label_images(stream: Any) -> None:
        rt = await runtime.ready()
        step = BatchStep(
            agent="label_images",
            out_topic=s.topic_product_labels,
            process=rt.labeller.process,
            route=_routes(
                delivery,
                topics.labels,
                topics.images_dlq,
                topics.review,
                topics.listing_review,
                topics.embeddings,
                topics.fingerprints,
            ),
            check=rt.labeller.check_integrity,
            remember=rt.labeller.remember,
        )

        async def handle(records: list[ConsumedRecord], after: Awaitable[Any] | None) -> None:
            await handle_batch(step, records, delivery, after)

        await run_batches(
            stream, handle, max_size=s.max_batch_size,
            max_latency_ms=s.max_batch_latency_ms, in_flight=s.image_batches_in_flight,
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
                    out_topic=s.topic_orders_enriched,
                    process=runtime.enricher.process,
                    route=_routes(delivery, topics.enriched, topics.orders_dlq),
                    batch_outputs=_sales_deltas(delivery, topics.deltas, s.sales_window_s),
                )
            )
        await handle_batch(step_[0], records, delivery)

    return BatchConsumer(
        topics=[s.topic_orders],
        group_id=s.order_consumer_group,
        handle=enrich_orders,
        client_config=aiokafka_config(s),
        max_records=s.order_max_batch_size,
        max_latency_ms=s.order_max_batch_latency_ms,
        before_start=runtime.ready,
        # Orders were consumed in the Faust group before: start where it stopped.
        inherit_offsets_from=s.app_id,
        membership=group_membership(s),
    )


def _add_sales(app: faust.App, topics: Topics, delivery: Delivery, s: Settings) -> Any:
    """``aggregate_sales``: the deltas -> a tumbling-window table -> category-sales (a timer)."""
    windows = SalesWindows(s.sales_window_s)
    window = EventTimeWindow(s.sales_window_s, s.sales_window_expires_s)
    table = (
        app.Table(
            "category-sales-windows",
            default=dict,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
            partitions=s.topic_partitions,
        )
        .using_window(window)
        .relative_to(lambda event: decode_delta(event.value).timestamp_s)  # type: ignore[attr-defined]
    )
    sales_topic = topics.sales.get_topic_name()

    @app.agent(topics.deltas, name="aggregate_sales")
    async def aggregate_sales(stream: Any) -> None:
        async for event in stream.events():
            delta = decode_delta(event.value)
            if window.late(delta.timestamp_s):
                metrics.SALES_LATE.inc(delta.orders)
                window.log_late(delta)
                continue
            window.observe(event.message.partition, delta.timestamp_s)
            key = delta.key
            # value(), not current(): current() reads the window of the record's
            # Kafka timestamp (when the delta was produced), while writes go to the
            # window of the order's own time (relative_to); orders placed in an
            # earlier window than they are processed in were read from the wrong
            # window and overwrote their own with it.
            agg = SalesAggregate.from_json(table[key].value(event))
            if skipped := agg.add(delta):
                metrics.SALES_DUPLICATES.inc(skipped)
            table[key] = agg.to_json()
            windows.changed(key, delta.timestamp_s, agg)

    @app.timer(interval=1.0, name="emit_category_sales")
    async def emit_category_sales() -> None:
        pending = windows.drain()
        if not pending:
            return
        await delivery.deliver(
            [delivery.record(sales_topic, k.encode(), v) for k, v in pending], "category sales"
        )
        metrics.EVENTS_OUT.labels(s.topic_category_sales).inc(len(pending))

    return aggregate_sales


def _add_lag_timer(app: faust.App, topics: Topics, order_consumer: BatchConsumer) -> None:
    """Every 5 s, the records behind the end of each input partition this worker reads.

    Only the agents' inputs count: Faust's assignment also holds the table's
    changelog and its assignor topic, which the worker writes and never reads
    while active, so they would report their whole length as lag.
    """
    inputs = {topics.images.get_topic_name(), topics.deltas.get_topic_name()}

    @app.timer(interval=5.0, name="consumer_lag")
    async def consumer_lag() -> None:
        consumer = app.consumer
        try:
            assignment = consumer.assignment()
            # Drop the series of partitions this worker no longer owns.
            metrics.CONSUMER_LAG.clear()
            # The last offset each stream has read; Faust's public ``position``
            # is the fetch position, ahead of it by whatever is buffered.
            read = consumer._read_offset  # type: ignore[attr-defined]
            # The broker's end offsets: the fetcher's highwater stops moving while
            # fetching is paused (a stalled agent), so lag would stop at what it buffered.
            mine = [tp for tp in assignment if tp.topic in inputs]
            ends = await consumer.highwaters(*mine) if mine else {}
            for tp in mine:
                hw = ends.get(tp)
                pos = read.get(tp)
                if hw is not None:
                    lag = hw - ((pos + 1) if pos is not None else 0)
                    metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, lag))
            for tp, lag in (await order_consumer.lag()).items():
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        except Exception:  # lag is best effort; never crash the worker for it
            logger.debug("consumer lag not available yet", exc_info=True)


def _search_follower(topics: Topics, runtime: Runtime, s: Settings) -> EmbeddingFollower:
    """Every worker's search index, read from the whole product-embeddings topic."""

    async def build() -> SearchIndex | None:
        rt = await runtime.ready()
        if rt.projection is None:
            return None
        return SearchIndex(
            rt.projection.dims, rt.engine.model_version, expansion_search=s.search_expansion
        )

    return EmbeddingFollower(
        topic=topics.embeddings.get_topic_name(),
        client_config=aiokafka_config(s),
        build=build,
        snapshot=s.search_snapshot_dir,
    )


def _view_builder(topics: Topics, runtime: Runtime, s: Settings) -> ViewBuilder:
    """The Redis views of product-labels and orders-enriched, kept by every worker's share."""
    views = ViewBuilder(
        labels_topic=topics.labels.get_topic_name(),
        orders_topic=topics.enriched.get_topic_name(),
        cache=runtime.cache,
        recommender=runtime.recommender,
        client_config=aiokafka_config(s),
        group_id=s.views_consumer_group,
        membership=group_membership(s),
    )
    runtime.coverage = views
    return views


def _integrity_follower(
    topics: Topics, runtime: Runtime, s: Settings, view: IntegrityView
) -> TopicFollower[IntegrityView]:
    """Every worker's integrity index, read from the whole listing-fingerprints topic."""

    async def build() -> IntegrityView:
        await runtime.ready()  # the runtime declares the topic
        return view

    return TopicFollower(
        name="integrity",
        topic=topics.fingerprints.get_topic_name(),
        client_config=aiokafka_config(s),
        build=build,
    )


def create_app(settings: Settings | None = None) -> VitrineApp:
    """Build the worker's Faust app for ``settings`` (default: from the environment)."""
    s = settings or get_settings()
    app = _faust_app(s)
    topics = Topics.on(app, s)
    delivery = Delivery(app)
    view = IntegrityView()
    app.runtime = runtime = Runtime(s, declare=topics.outputs, integrity=view)
    _add_label_images(app, topics, runtime, delivery, s)
    app.order_consumer = order_consumer = _order_consumer(topics, runtime, delivery, s)
    app.service(order_consumer)  # type: ignore[arg-type]
    _add_sales(app, topics, delivery, s)
    _add_lag_timer(app, topics, order_consumer)
    app.search = search = _search_follower(topics, runtime, s)
    app.service(search)  # type: ignore[arg-type]
    app.integrity = integrity = _integrity_follower(topics, runtime, s, view)
    runtime.integrity_loaded = integrity.caught_up
    app.service(integrity)  # type: ignore[arg-type]
    app.views = views = _view_builder(topics, runtime, s)
    app.service(views)  # type: ignore[arg-type]
    add_pages(app, runtime, order_consumer, app.unreadable, search, integrity, views)
    return app
