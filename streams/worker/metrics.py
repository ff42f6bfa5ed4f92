"""Prometheus metrics of the worker, served at ``/metrics`` on its web port."""

from __future__ import annotations

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

__all__ = [
    "BATCH_SIZE",
    "CACHE_BYPASSED",
    "CACHE_HITS",
    "CACHE_MISSES",
    "CONSUMER_LAG",
    "CONTENT_TYPE",
    "DEAD_LETTERED",
    "DECODE_SECONDS",
    "END_TO_END_SECONDS",
    "EVENTS_IN",
    "EVENTS_OUT",
    "EXECUTION_PROVIDER",
    "FOLLOWER_CAUGHT_UP",
    "IMAGES_INFERRED",
    "INFERENCE_CLAIMED_ELSEWHERE",
    "INFERENCE_SECONDS",
    "INFERENCE_SHARED",
    "INTEGRITY_FLAGS",
    "INTEGRITY_INDEXED",
    "INTEGRITY_SKIPPED",
    "INTEGRITY_UPDATES",
    "KAFKA_ERRORS",
    "OFFSET_HOLES",
    "ORDERS_HELD_SECONDS",
    "ORDER_ITEMS_UNKNOWN",
    "PREPROCESS_SECONDS",
    "REDIS_ERRORS",
    "REDIS_FULL",
    "REDIS_UP",
    "SALES_DUPLICATES",
    "SALES_LATE",
    "SEARCH_INDEXED",
    "SEARCH_QUERIES",
    "SEARCH_SECONDS",
    "SEARCH_UPDATES",
    "UNREADABLE_PARTITIONS",
    "VIEW_CAUGHT_UP",
    "VIEW_REBUILDS",
    "VIEW_REBUILD_BEHIND",
    "VIEW_REBUILD_SECONDS",
    "VIEW_RECORDS_APPLIED",
    "VIEW_RECORDS_SKIPPED",
    "render",
]

# The exposition format's media type (prometheus_client adds "; charset=utf-8").
CONTENT_TYPE = "text/plain; version=0.0.4"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

EVENTS_IN = Counter("vitrine_events_in", "Events consumed", ["topic"])
EVENTS_OUT = Counter("vitrine_events_out", "Events produced", ["topic"])
DEAD_LETTERED = Counter(
    "vitrine_events_dead_lettered", "Events sent to a dead-letter topic", ["topic", "code"]
)
BATCH_SIZE = Histogram(
    "vitrine_batch_size",
    "Events per micro-batch",
    ["agent"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
DECODE_SECONDS = Histogram(
    "vitrine_decode_seconds", "Image decode time per batch", buckets=_LATENCY_BUCKETS
)
PREPROCESS_SECONDS = Histogram(
    "vitrine_preprocess_seconds", "Preprocessing time per batch", buckets=_LATENCY_BUCKETS
)
INFERENCE_SECONDS = Histogram(
    "vitrine_inference_seconds", "Model run time per batch", buckets=_LATENCY_BUCKETS
)
END_TO_END_SECONDS = Histogram(
    "vitrine_end_to_end_seconds",
    "Publish (input record timestamp) to output produced, per event",
    ["agent"],
    buckets=_LATENCY_BUCKETS,
)
CACHE_HITS = Counter("vitrine_cache_hits", "Image label cache hits")
CACHE_MISSES = Counter("vitrine_cache_misses", "Image label cache misses")
INFERENCE_SHARED = Counter(
    "vitrine_inference_shared",
    "Cache misses not inferred again: the same image was being inferred for another batch",
)
INFERENCE_CLAIMED_ELSEWHERE = Counter(
    "vitrine_inference_claimed_elsewhere",
    "Cache misses not inferred here: the image's claim was held (by another worker, or"
    " finished since the lookup), and its label came",
)
IMAGES_INFERRED = Counter(
    "vitrine_images_inferred", "Images this worker ran through the model (decode + inference)"
)
CACHE_BYPASSED = Counter(
    "vitrine_cache_bypassed", "Lookups or writes skipped because Redis was unreachable", ["op"]
)
REDIS_ERRORS = Counter("vitrine_redis_errors", "Redis commands that failed", ["op"])
INTEGRITY_FLAGS = Counter(
    "vitrine_integrity_flags",
    "Labelled listings flagged duplicate_image, near_duplicate or category_mismatch",
    ["flag"],
)
INTEGRITY_SKIPPED = Counter(
    "vitrine_integrity_skipped",
    "Listings not checked for near duplicates: no_fingerprint (a cached label whose photo's"
    " fingerprint the integrity index does not hold), or internal_error",
    ["reason"],
)
INTEGRITY_INDEXED = Gauge(
    "vitrine_integrity_indexed_photos",
    "Photos in this worker's integrity index (read from listing-fingerprints)",
)
INTEGRITY_UPDATES = Counter(
    "vitrine_integrity_updates",
    "listing-fingerprints records read into the integrity index, by outcome (indexed;"
    " known: already there; tombstone and invalid: skipped)",
    ["outcome"],
)
REDIS_UP = Gauge("vitrine_redis_up", "1 when the last Redis command succeeded")
REDIS_FULL = Counter(
    "vitrine_redis_full",
    "Redis commands refused with OOM: Redis at maxmemory with no cache entry left to evict",
    ["op"],
)
VIEW_RECORDS_APPLIED = Counter(
    "vitrine_view_records_applied", "Record-topic records applied to the Redis views", ["topic"]
)
VIEW_RECORDS_SKIPPED = Counter(
    "vitrine_view_records_skipped",
    "Record-topic records the views could not read (no key, not the contract)",
    ["topic"],
)
VIEW_REBUILDS = Counter(
    "vitrine_view_rebuilds",
    "Partitions of a record topic read again because Redis lost the view's state",
    ["topic"],
)
VIEW_CAUGHT_UP = Gauge(
    "vitrine_view_caught_up",
    "1 once this worker's view partitions have reached the end offsets of their (re)build",
)
VIEW_REBUILD_BEHIND = Gauge(
    "vitrine_view_rebuild_behind_records",
    "Records this worker's views still have to apply to finish a (re)build",
)
VIEW_REBUILD_SECONDS = Gauge(
    "vitrine_view_rebuild_seconds", "How long the last (re)build of this worker's views took"
)
ORDERS_HELD_SECONDS = Histogram(
    "vitrine_orders_held_seconds",
    "How long an order batch waited for Redis or for the product view to cover its products",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
KAFKA_ERRORS = Counter("vitrine_kafka_errors", "Produce failures", ["topic"])
SALES_DUPLICATES = Counter(
    "vitrine_sales_duplicates",
    "Redelivered orders not counted again in the category-sales windows",
)
SALES_LATE = Counter(
    "vitrine_sales_late_orders",
    "Orders whose sales window had expired (VITRINE_SALES_WINDOW_EXPIRES_S behind the newest"
    " order time): not counted in category-sales, still on orders-enriched",
)
ORDER_ITEMS_UNKNOWN = Counter(
    "vitrine_order_items_unknown", "Order line items enriched with category unknown", ["reason"]
)
OFFSET_HOLES = Counter(
    "vitrine_offset_holes",
    "Offsets of a partition that never reached the labelling agent in one consumer generation,"
    " by outcome: read_again (processed after all), lost, stalled (the idle agent never got"
    " them; the partition was sought back to them), rewound (a partition sought back: its"
    " first record in a generation was past its committed offset, or a sales-deltas or"
    " corrections event came past a hole), or unrecovered (a hole's records that never came"
    " again after such a seek, given up on)",
    ["topic", "outcome"],
)
UNREADABLE_PARTITIONS = Gauge(
    "vitrine_unreadable_partitions",
    "1 while a partition is paused on a record batch this worker cannot read",
    ["topic", "partition"],
)
CONSUMER_LAG = Gauge(
    "vitrine_consumer_lag", "Records behind the end of the partition", ["topic", "partition"]
)
SEARCH_INDEXED = Gauge(
    "vitrine_search_indexed_products", "Products in this worker's visual-search index"
)
SEARCH_UPDATES = Counter(
    "vitrine_search_updates",
    "product-embeddings records read into the search index, by outcome"
    " (indexed, removed, other_model: another model version's descriptor, invalid)",
    ["outcome"],
)
SEARCH_QUERIES = Counter("vitrine_search_queries", "Visual-search queries answered", ["kind"])
SEARCH_SECONDS = Histogram(
    "vitrine_search_seconds",
    "Visual-search query time in the index (not the query image's inference)",
    buckets=_LATENCY_BUCKETS,
)
FOLLOWER_CAUGHT_UP = Gauge(
    "vitrine_follower_caught_up",
    "1 once this worker's view (search, integrity) has read its topic up to the end offsets"
    " found at start; until then the duplicate checks wait and /similar answers 503",
    ["view"],
)
EXECUTION_PROVIDER = Info("vitrine_execution_provider", "ONNX Runtime provider and device in use")


def render() -> bytes:
    """The exposition text of every metric."""
    return generate_latest(REGISTRY)
