"""The Faust app: topics, agents, the sales table, timers and web pages.

Agents:

- ``label_images`` (Faust agent): product-images -> product-labels
  (+ product-images.dlq), in micro-batches (:mod:`streams.batcher`), inference
  off the event loop. Two batches overlap (``image_batches_in_flight``): one is
  in the model while the next is parsed and looked up and the previous one is
  cached and produced; the cache writes and outputs stay in input order.
- ``enrich_orders``: orders -> orders-enriched (+ orders.dlq), and per-order
  sales deltas to an internal topic keyed ``category|region``. It consumes
  through :class:`~streams.batchconsumer.BatchConsumer`, a service of this app
  with its own consumer group, because Faust's per-event stream path alone
  costs more CPU than an order's budget (measurements in that module).
- ``aggregate_sales`` (Faust agent): the internal topic -> a tumbling-window
  table -> category-sales (changed windows emitted by a timer).

Delivery is at-least-once: a batch's events are acked (or, for orders,
committed) only after every output of the batch (labels, enriched orders, dead
letters) is confirmed by the broker, and Faust commits only acked offsets. On
SIGTERM the order consumer finishes its batch and commits first, while Redis and
the producer are still up; then Faust stops fetching, waits until every fetched
event is acked (so the in-flight batches finish and are produced), commits, and
exits.

All values are raw bytes on the wire; decoding is ours (:mod:`schemas.codec`),
so a bad value becomes a dead letter instead of a Faust decode error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar, cast

import faust
import mode
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams import metrics
from streams.batchconsumer import BatchConsumer
from streams.batcher import MicroBatcher
from streams.deadletter import dead_letter_headers
from streams.enrich import Enriched
from streams.kafka_io import aiokafka_config, ssl_context
from streams.labelling import Labelled
from streams.records import Record, Rejected, from_faust_event
from streams.settings import Settings, get_settings
from streams.windows import (
    SalesAggregate,
    SalesWindows,
    decode_delta,
    encode_delta,
    merge_deltas,
)

__all__ = ["Runtime", "create_app"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_PRODUCE_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def _credentials(settings: Settings) -> Any:
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if proto == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )


class Runtime:
    """What the agents share in one worker process: engine, cache, executor.

    Built on first use, so that commands which only need the app's command
    line (``vitrine predict``, ``vitrine stack``) never load the model.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ready: asyncio.Future[Runtime] | None = None
        # Faust declares only the topics agents subscribe to; outputs are ours.
        self.declare: list[Any] = []
        self.executor = ThreadPoolExecutor(
            max_workers=settings.inference_workers, thread_name_prefix="vitrine-infer"
        )

    async def ready(self) -> Runtime:
        """Build everything once; every agent awaits the same build."""
        if self._ready is None:
            self._ready = asyncio.ensure_future(self._build())
        return await self._ready

    async def _build(self) -> Runtime:
        # Imported here: the engine pulls in onnxruntime and opencv.
        from inference.decode import ImageLimits  # noqa: PLC0415
        from streams.cache import LabelCache  # noqa: PLC0415
        from streams.commands.inference_cmds import build_engine  # noqa: PLC0415
        from streams.enrich import OrderEnricher  # noqa: PLC0415
        from streams.fetch import FetchPolicy  # noqa: PLC0415
        from streams.labelling import ImageLabeller  # noqa: PLC0415

        s = self.settings
        for topic in self.declare:
            await topic.maybe_declare()
        loop = asyncio.get_running_loop()
        self.engine = await loop.run_in_executor(self.executor, build_engine, s)
        # A full batch once, so the first real one does not pay for it.
        await loop.run_in_executor(self.executor, self.engine.warmup, s.max_batch_size)
        metrics.EXECUTION_PROVIDER.info(
            {
                "provider": self.engine.provider,
                "device": self.engine.device,
                "model": f"{self.engine.model_name}:{self.engine.model_version}",
            }
        )
        logger.info(
            "engine ready: model %s %s on %s (%s), max batch %d, max latency %d ms",
            self.engine.model_name,
            self.engine.model_version,
            self.engine.provider,
            self.engine.device,
            s.max_batch_size,
            s.max_batch_latency_ms,
        )
        self.cache = LabelCache(
            s.redis_url,
            ttl_s=s.redis_ttl_s,
            timeout_ms=s.redis_timeout_ms,
            prefix=s.redis_key_prefix,
            password=s.redis_password.get_secret_value(),
        )
        limits = ImageLimits(max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)
        self.labeller = ImageLabeller(
            self.engine,
            self.cache,
            self.executor,
            limits=limits,
            fetch_policy=FetchPolicy.from_settings(s),
            fetch_retries=s.image_fetch_retries,
        )
        self.enricher = OrderEnricher(
            self.cache,
            label_wait_ms=s.order_label_wait_ms,
            retry_interval_ms=s.order_label_retry_interval_ms,
        )
        return self

    async def close(self) -> None:
        """Release connections and threads (after the agents have stopped)."""
        built = self._ready
        if built is not None and built.done() and not built.cancelled() and not built.exception():
            await self.labeller.close()
            await self.cache.close()
        self.executor.shutdown(wait=False)


async def _isolate(
    process: Callable[[Sequence[Record]], Awaitable[list[T]]],
    records: Sequence[Record],
    on_error: Callable[[Record, BaseException], T],
) -> list[T]:
    """Run ``process`` on the batch; if it raises, retry one record at a time.

    A bug that one record triggers must not sink its neighbours: the others go
    through, and the culprit becomes a dead letter with code ``internal.error``.
    """
    try:
        return await process(records)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("batch of %d failed; retrying record by record", len(records))
    out: list[T] = []
    for rec in records:
        try:
            out.extend(await process([rec]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("record %s[%d]@%d failed", rec.topic, rec.partition, rec.offset)
            out.append(on_error(rec, exc))
    return out


def _internal_error(rec: Record, exc: BaseException) -> Rejected:
    return Rejected(rec, "internal.error", f"{type(exc).__name__}: {exc}")


async def _deliver(sends: list[Callable[[], Awaitable[Any]]], what: str) -> None:
    """Produce every output and wait for the broker's acknowledgement of each.

    A failed produce (broker restarting, leader moving) is retried with back-off
    rather than acking its input: at-least-once, duplicates possible, no loss.
    """
    pending = sends
    for attempt, delay in enumerate((*_PRODUCE_RETRY_S, None)):
        futures = [await send() for send in pending]
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [s for s, r in zip(pending, results, strict=True) if isinstance(r, BaseException)]
        if not failed:
            return
        errors = {type(r).__name__ for r in results if isinstance(r, BaseException)}
        metrics.KAFKA_ERRORS.labels(what).inc(len(failed))
        if delay is None:
            raise RuntimeError(f"producing {len(failed)} {what} failed after {attempt} retries")
        logger.warning(
            "producing %d %s failed (%s); retrying in %.1f s",
            len(failed),
            what,
            ", ".join(sorted(errors)),
            delay,
        )
        await asyncio.sleep(delay)
        pending = failed


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with ``VITRINE_KAFKA_FETCH_MAX_WAIT_MS`` applied.

    Faust passes ``fetch_max_wait_ms=1500`` to aiokafka with no setting to change
    it, and aiokafka keeps one fetch in flight per broker: a fetch for idle
    partitions (the sales-deltas topic, or images partitions already drained)
    then holds back the partitions that have data for up to 1.5 s.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads it when the consumer starts (it builds its Fetcher then).
        consumer._fetch_max_wait_ms = cast(VitrineApp, self.app).fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class VitrineApp(faust.App):
    """Faust's app with a bound on shutdown.

    ``shutdown_timeout_s`` after stopping starts, the process exits whatever is
    still running.

    Faust waits for every fetched event to be acked before it commits and stops;
    a batch stuck on a dead dependency would hold a SIGTERM forever. Exiting
    without committing is safe: the uncommitted events are delivered again.
    """

    shutdown_timeout_s: float = 30.0
    fetch_max_wait_ms: int = 100

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        timeout = self.shutdown_timeout_s

        def give_up() -> None:
            logger.error("shutdown took over %.0f s (VITRINE_SHUTDOWN_TIMEOUT_S); exiting", timeout)
            logging.shutdown()
            os._exit(70)

        watchdog = threading.Timer(timeout, give_up)
        watchdog.daemon = True
        watchdog.start()
        # Its in-flight batch needs Redis and the producer: stop it while both are up.
        batch_consumer: BatchConsumer | None = getattr(self, "vitrine_order_consumer", None)
        if batch_consumer is not None:
            await batch_consumer.stop()
        await super().on_stop()
        runtime: Runtime | None = getattr(self, "vitrine_runtime", None)
        if runtime is not None:
            await runtime.close()


def create_app(settings: Settings | None = None) -> faust.App:
    """Build the Faust app for ``settings`` (default: from the environment)."""
    s = settings or get_settings()
    app = VitrineApp(
        s.app_id,
        broker=["kafka://" + h.strip() for h in s.kafka_bootstrap_servers.split(",")],
        broker_credentials=_credentials(s),
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
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=True,
        agent_supervisor=mode.CrashingSupervisor,
        web_host=s.web_host,
        web_port=s.web_port,
        web_in_thread=False,
        table_cleanup_interval=60.0,
    )
    app.shutdown_timeout_s = s.shutdown_timeout_s
    app.fetch_max_wait_ms = s.kafka_fetch_max_wait_ms
    runtime = Runtime(s)
    app.vitrine_runtime = runtime  # type: ignore[attr-defined]

    def topic(name: str, **kw: Any) -> faust.TopicT:
        return app.topic(name, internal=True, partitions=s.topic_partitions, **kw)

    images = topic(s.topic_product_images)
    orders = topic(s.topic_orders)
    labels = topic(s.topic_product_labels)
    enriched = topic(s.topic_orders_enriched)
    sales_out = topic(s.topic_category_sales, compacting=True)
    images_dlq = topic(s.topic_product_images_dlq)
    orders_dlq = topic(s.topic_orders_dlq)
    deltas = topic(f"{s.app_id}-sales-deltas")
    runtime.declare = [orders, labels, enriched, sales_out, images_dlq, orders_dlq, deltas]

    windows = SalesWindows(s.sales_window_s)
    table = (
        app.Table(
            "category-sales-windows",
            default=dict,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
            partitions=s.topic_partitions,
        )
        .tumbling(s.sales_window_s, expires=s.sales_window_expires_s)
        .relative_to(lambda event: decode_delta(event.value).timestamp)  # type: ignore[attr-defined]
    )

    async def produce(
        topic_: faust.TopicT, key: bytes | None, value: bytes, headers: Any = None
    ) -> Any:
        """Hand one record to the app's aiokafka producer; return its delivery future.

        Faust's ``topic.send`` costs about 0.6 ms a record in its wrappers and
        sensors here (measured: 512 enriched orders took 0.3 s to deliver, the
        aiokafka producer underneath takes 15 ms); the producer, its settings
        and its partitioner are the same.
        """
        producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
        return await producer.send(topic_.get_topic_name(), value, key=key, headers=headers)

    def dead_letter(topic_: faust.TopicT, rej: Rejected) -> Callable[[], Awaitable[Any]]:
        rec = rej.record
        headers = dead_letter_headers(rej, topic_.get_topic_name())
        return partial(produce, topic_, rec.key, rec.value, headers)

    async def handle_batch(
        records: list[Record],
        agent: str,
        process: Callable[[Sequence[Record]], Awaitable[list[Any]]],
        route: Callable[[Any], list[Callable[[], Awaitable[Any]]]],
        out_topic: str,
        *,
        batch_outputs: Callable[[list[Any]], list[Callable[[], Awaitable[Any]]]] | None = None,
        remember: Callable[[list[Any]], Awaitable[None]] | None = None,
        after: Awaitable[Any] | None = None,
    ) -> None:
        """Process one batch and produce all its outputs; return once each is confirmed.

        ``after`` (the previous batch, when batches overlap) is awaited between
        processing and ``remember`` + producing, so side effects stay in input order.
        """
        metrics.EVENTS_IN.labels(records[0].topic).inc(len(records))
        metrics.BATCH_SIZE.labels(agent).observe(len(records))
        results = await _isolate(process, records, _internal_error)
        if after is not None:
            await after
        if remember is not None:
            await remember(results)
        sends = [send for res in results for send in route(res)]
        if batch_outputs is not None:
            sends += batch_outputs(results)
        await _deliver(sends, agent)
        outputs = sum(not isinstance(res, Rejected) for res in results)
        metrics.EVENTS_OUT.labels(out_topic).inc(outputs)
        wall_ms = time.time() * 1000
        hist = metrics.END_TO_END_SECONDS.labels(agent)
        for rec in records:
            if rec.timestamp_ms:
                hist.observe(max(0.0, (wall_ms - rec.timestamp_ms) / 1000))

    async def run_batches(
        stream: Any,
        handle: Callable[[list[Record], Awaitable[Any] | None], Awaitable[None]],
        *,
        max_size: int,
        max_latency_ms: int,
        in_flight: int,
    ) -> None:
        """Consume a Faust stream in micro-batches; ack a batch once its outputs are confirmed.

        Up to ``in_flight`` batches overlap; each is handed the previous one's
        task to wait for before its ordered steps.
        """
        stream = stream.noack()
        batches = MicroBatcher(
            stream.events(), max_size=max_size, max_latency_s=max_latency_ms / 1000
        )

        async def one(events: list[Any], after: asyncio.Task[None] | None) -> None:
            await handle([from_faust_event(e) for e in events], after)
            for e in events:
                await stream.ack(e)

        running: list[asyncio.Task[None]] = []
        try:
            async for events in batches:
                running.append(asyncio.ensure_future(one(events, running[-1] if running else None)))
                if len(running) >= in_flight:
                    await running.pop(0)  # raises what the batch raised: the agent crashes
            for task in running:
                await task
        finally:
            for task in running:
                task.cancel()

    def route_label(res: Labelled | Rejected) -> list[Callable[[], Awaitable[Any]]]:
        if isinstance(res, Rejected):
            return [dead_letter(images_dlq, res)]
        return [partial(produce, labels, res.key, res.value)]

    def route_order(res: Enriched | Rejected) -> list[Callable[[], Awaitable[Any]]]:
        if isinstance(res, Rejected):
            return [dead_letter(orders_dlq, res)]
        return [partial(produce, enriched, res.key, res.value)]

    def sales_of_batch(results: list[Enriched | Rejected]) -> list[Callable[[], Awaitable[Any]]]:
        merged = merge_deltas(
            (d for res in results if isinstance(res, Enriched) for d in res.deltas),
            s.sales_window_s,
        )
        return [partial(produce, deltas, d.key.encode(), encode_delta(d)) for d in merged]

    @app.agent(images, name="label_images")
    async def label_images(stream: Any) -> None:
        rt = await runtime.ready()

        async def handle(records: list[Record], after: Awaitable[Any] | None) -> None:
            await handle_batch(
                records, "label_images", rt.labeller.process, route_label,
                s.topic_product_labels, remember=rt.labeller.remember, after=after,
            )  # fmt: skip

        await run_batches(
            stream, handle, max_size=s.max_batch_size,
            max_latency_ms=s.max_batch_latency_ms, in_flight=s.image_batches_in_flight,
        )  # fmt: skip

    async def enrich_orders(records: list[Record]) -> None:
        await handle_batch(
            records, "enrich_orders", runtime.enricher.process, route_order,
            s.topic_orders_enriched, batch_outputs=sales_of_batch,
        )  # fmt: skip

    # Orders bypass Faust's per-event stream machinery (see streams.batchconsumer).
    order_consumer = BatchConsumer(
        topics=[s.topic_orders],
        group_id=s.order_consumer_group,
        handle=enrich_orders,
        client_config=aiokafka_config(s),
        max_records=s.order_max_batch_size,
        max_latency_ms=s.order_max_batch_latency_ms,
        before_start=runtime.ready,
        # Orders were consumed in the Faust group before: start where it stopped.
        inherit_offsets_from=s.app_id,
    )
    app.service(order_consumer)  # type: ignore[arg-type]
    app.vitrine_order_consumer = order_consumer  # type: ignore[attr-defined]

    @app.agent(deltas, name="aggregate_sales")
    async def aggregate_sales(stream: Any) -> None:
        async for event in stream.events():
            delta = decode_delta(event.value)
            key = delta.key
            agg = SalesAggregate.from_json(table[key].current(event))
            agg.add(delta)
            table[key] = agg.to_json()
            windows.changed(key, delta.timestamp, agg)

    @app.timer(interval=1.0, name="emit_category_sales")
    async def emit_category_sales() -> None:
        pending = windows.drain()
        if not pending:
            return
        await _deliver(
            [partial(produce, sales_out, k.encode(), v) for k, v in pending],
            "category sales",
        )
        metrics.EVENTS_OUT.labels(s.topic_category_sales).inc(len(pending))

    @app.timer(interval=5.0, name="consumer_lag")
    async def consumer_lag() -> None:
        consumer = app.consumer
        try:
            assignment = consumer.assignment()
            # Drop the series of partitions this worker no longer owns.
            metrics.CONSUMER_LAG.clear()
            read = consumer._read_offset  # type: ignore[attr-defined]
            for tp in assignment:
                hw = consumer.highwater(tp)
                pos = read.get(tp)
                if hw is not None:
                    lag = hw - ((pos + 1) if pos is not None else 0)
                    metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, lag))
            for tp, lag in (await order_consumer.lag()).items():
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        except Exception:  # lag is best effort; never crash the worker for it
            logger.debug("consumer lag not available yet", exc_info=True)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp takes the charset apart from the content type.
        return web.bytes(metrics.render(), content_type=metrics.CONTENT_TYPE)

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        built = runtime._ready is not None and runtime._ready.done()
        built = built and order_consumer.running.is_set()
        return web.json({"ready": built}, status=200 if built else 503)

    app.vitrine_agents = (label_images, aggregate_sales)  # type: ignore[attr-defined]
    return app
