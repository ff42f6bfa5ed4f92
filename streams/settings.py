"""The one settings object of vitrine, read from ``VITRINE_*`` environment variables.

:class:`Settings` composes one group per family (``settings.kafka``,
``settings.topics``, ``settings.redis``, ``settings.model``, ...). Each group
reads the same variables as ever: its fields' names follow its prefix
(``kafka.bootstrap_servers`` is ``VITRINE_KAFKA_BOOTSTRAP_SERVERS``), and the
few that do not share it name their variable (``kafka.app_id`` is
``VITRINE_APP_ID``); :func:`env_fields` lists them all.

Every value has a default that works with the native local stack, whose own
ports live with it (:class:`streams.tools.stack.StackSettings`). Units are in
the names, and secrets are secret types that never print. Other packages
(``inference/``) take plain arguments built from these settings, so they never
read the environment themselves.
"""

from __future__ import annotations

import functools
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.serving.defaults import DEFAULT_MAX_BATCH_SIZE

__all__ = [
    "DEFAULT_STATE_DIR",
    "ConsoleSettings",
    "ImageSettings",
    "IntegritySettings",
    "KafkaSettings",
    "ModelSettings",
    "OrderSettings",
    "RecommendSettings",
    "RedisSettings",
    "SearchSettings",
    "Settings",
    "TopicSettings",
    "WebSettings",
    "env_fields",
    "get_settings",
    "group_config",
    "settings_from_env",
]

DEFAULT_STATE_DIR = Path.home() / ".cache" / "vitrine"


def group_config(env_prefix: str) -> SettingsConfigDict:
    """The configuration every settings class shares; only the prefix differs."""
    return SettingsConfigDict(
        env_prefix=env_prefix,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        # A field whose variable is not prefix + name (an alias) is still set by name in code.
        validate_by_name=True,
    )


def _split(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


class KafkaSettings(BaseSettings):
    """``VITRINE_KAFKA_*``: the brokers, the client's security and behaviour, and the app id."""

    model_config = group_config("VITRINE_KAFKA_")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    max_message_bytes: int = 8 * 1024 * 1024
    # How long the broker may hold a fetch that found no new data. A client has
    # one fetch in flight per broker and leaves partitions it still holds data
    # for out of it; so while a fetch for idle partitions waits, the busy ones
    # cannot be fetched again. Faust hard-codes 1.5 s, which showed as 1.3-1.5 s
    # stalls in `vitrine bench pipeline`; this bounds them.
    fetch_max_wait_ms: int = Field(default=100, ge=0, le=10_000)
    # The worker's own producer compresses its record batches with this codec.
    # Measured on its real outputs (`vitrine bench codecs`, 2-core VM): zstd
    # makes labels and enriched orders 5-8x smaller for 0.3-2.3 us more CPU a
    # record; lz4 here is larger and slower, gzip 15-35x the CPU. Consumers of
    # every codec are supported whatever this is.
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    # Liveness in the worker's consumer groups (Faust's and the order consumer's):
    # a member silent for the session timeout is dropped and its partitions move
    # to the others. Shorter moves them sooner after a crash, longer rides out
    # longer pauses (docs/OPERATIONS.md, "Restarts and consumer groups").
    session_timeout_ms: int = Field(default=10_000, ge=6_000, le=90_000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    # The Faust app id: the image agent's consumer group and the prefix of the others.
    app_id: str = Field(default="vitrine", validation_alias="VITRINE_APP_ID")

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> Self:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms={self.heartbeat_interval_ms} "
                "(VITRINE_KAFKA_HEARTBEAT_INTERVAL_MS) must be below "
                f"session_timeout_ms={self.session_timeout_ms} "
                "(VITRINE_KAFKA_SESSION_TIMEOUT_MS); a third of it is usual"
            )
        return self

    @property
    def brokers(self) -> tuple[str, ...]:
        """``bootstrap_servers`` as a list of ``host:port``, blanks dropped."""
        return _split(self.bootstrap_servers)

    @property
    def order_consumer_group(self) -> str:
        """The order agent's consumer group (its own: see :mod:`streams.worker.batchconsumer`)."""
        return f"{self.app_id}-orders"

    @property
    def views_consumer_group(self) -> str:
        """The view builders' consumer group (:mod:`streams.worker.views`)."""
        return f"{self.app_id}-views"


class TopicSettings(BaseSettings):
    """``VITRINE_TOPIC_*``: the topics' names, and how the worker creates them."""

    model_config = group_config("VITRINE_TOPIC_")

    product_images: str = "product-images"
    orders: str = "orders"
    product_labels: str = "product-labels"
    orders_enriched: str = "orders-enriched"
    category_sales: str = "category-sales"
    product_images_dlq: str = "product-images.dlq"
    orders_dlq: str = "orders.dlq"
    # Labelled products the model could not place (flags low_confidence /
    # unknown_product), key product_id: the same ProductLabelled, for review tools.
    product_review: str = "product-review"
    # Listings with an integrity flag (duplicate_image, near_duplicate,
    # category_mismatch), key product_id: the same ProductLabelled, with its evidence.
    listing_review: str = "listing-review"
    # Compacted, key product_id: each product's latest visual-search descriptor
    # (ProductEmbedding); every worker reads it whole into its search index.
    product_embeddings: str = "product-embeddings"
    # Compacted, key ``<image_sha256>|<seller_id>``: each seller's first listing of
    # each photo with the photo's fingerprint (ListingFingerprint), read whole by
    # every worker into its integrity index; its retention is the integrity state's.
    listing_fingerprints: str = "listing-fingerprints"
    # Compacted, key product_id (label decisions) or ``<product_id>|<duplicate_of>``
    # (pair decisions): reviewers' decisions (LabelCorrection), the record of what
    # people decided; every worker reads it whole, one applies each decision.
    label_corrections: str = "label-corrections"
    # label-corrections values that are no LabelCorrection, with the reason in headers.
    label_corrections_dlq: str = "label-corrections.dlq"
    partitions: int = 4
    replication_factor: int = 1


class RedisSettings(BaseSettings):
    """``VITRINE_REDIS_*``: the server or cluster, its credentials, keys and timeouts."""

    model_config = group_config("VITRINE_REDIS_")

    # rediss:// for TLS (redis-py verifies the server certificate by default).
    url: str = "redis://127.0.0.1:6379/0"
    password: SecretStr = SecretStr("")
    # The CA that signs a rediss:// server's certificate, when it is not one
    # the system trusts (the secured local stack's own CA, for instance).
    ssl_cafile: Path | None = None
    ttl_s: int = 7 * 24 * 3600
    timeout_ms: int = 250
    key_prefix: str = "vitrine"
    # A Redis Cluster (redis-py's RedisCluster): url names any one of its
    # nodes, redis:// or rediss://, and the client finds the others. Multi-key
    # calls are split per hash slot (streams/worker/redisclient.py).
    cluster: bool = False
    # How long a cluster command keeps retrying while a master is unreachable or
    # its slots move (CLUSTERDOWN, TRYAGAIN): longer than a failover (the
    # cluster's cluster-node-timeout, 15 s by default, plus about a second), so
    # that a replica's promotion costs retries, not a cache outage.
    cluster_failover_ms: int = Field(default=20_000, ge=0, le=600_000)


class ModelSettings(BaseSettings):
    """The model, how it runs (ONNX Runtime), how images are batched for it, its thresholds."""

    model_config = group_config("VITRINE_")

    max_batch_size: int = Field(default=DEFAULT_MAX_BATCH_SIZE, ge=1, le=1024)
    max_batch_latency_ms: int = Field(default=50, ge=1)
    inference_workers: int = Field(default=1, ge=1)
    # Image batches in progress at once: while one is in the model, the next is
    # parsed, hashed and looked up, and the previous one cached and produced.
    # Outputs are still written and produced in input order.
    image_batches_in_flight: int = Field(default=2, ge=1, le=8)
    model_path: Path | None = None
    execution_providers: str = "tensorrt,cuda,cpu"
    intra_op_threads: int = Field(default=0, ge=0)
    inter_op_threads: int = Field(default=1, ge=0)
    gpu_device_id: int = 0
    fp16: bool = True
    # CPU graph: auto serves the model's INT8 graph where its manifest has one
    # (kept only if it held top-1 on validation), fp32 never, int8 insists.
    precision: Literal["auto", "fp32", "int8"] = "auto"
    top_k: int = Field(default=5, ge=1, le=100)
    # Review thresholds; unset: the model's (its manifest, `vitrine review-policy`).
    # Under the kind threshold (the top kind's summed probability) an image is
    # flagged uncertain_kind, under the OOD score threshold unknown_product; either
    # sends it to the product_review topic. Under the product threshold (top-1
    # probability) it is flagged uncertain_product, which routes nothing. The
    # confidence threshold is the older rule: top-1 under it -> low_confidence, routed.
    kind_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    product_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    confidence_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    ood_threshold: float | None = None

    @property
    def providers(self) -> tuple[str, ...]:
        """Execution providers in the order they are tried, lower-cased."""
        return tuple(p.lower() for p in _split(self.execution_providers))


class ImageSettings(BaseSettings):
    """``VITRINE_IMAGE_*``: where images may come from, how they are fetched, how large."""

    model_config = group_config("VITRINE_IMAGE_")

    max_image_bytes: int = Field(
        default=10 * 1024 * 1024, validation_alias="VITRINE_MAX_IMAGE_BYTES"
    )
    max_image_pixels: int = Field(default=40_000_000, validation_alias="VITRINE_MAX_IMAGE_PIXELS")
    fetch_timeout_ms: int = 5000
    fetch_allowed_hosts: str = ""
    # Private, loopback and link-local addresses are refused unless the host is
    # allow-listed above AND this is set (an internal image server).
    fetch_allow_private_addresses: bool = False
    fetch_retries: int = Field(default=2, ge=0, le=10)
    # A worker about to infer new images claims their hashes in Redis for this
    # long (SET NX PX); another worker that misses the same images meanwhile
    # waits for their labels instead of inferring them again, and infers them
    # itself if the claim lapses without a label (its holder died). 0: no claims.
    claim_ttl_ms: int = Field(default=10_000, ge=0, le=600_000)
    file_root: Path | None = None

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """Hosts that ``http://`` image URIs may name."""
        return frozenset(h.lower() for h in _split(self.fetch_allowed_hosts))


class OrderSettings(BaseSettings):
    """``VITRINE_ORDER_*``: order batches and waits; the sales windows and regions they feed."""

    model_config = group_config("VITRINE_ORDER_")

    # Orders are cheap to process: larger batches amortise the per-batch round
    # trips (one MGET, one produce wait) over more events.
    max_batch_size: int = Field(default=512, ge=1, le=10_000)
    max_batch_latency_ms: int = Field(default=50, ge=1)
    label_wait_ms: int = Field(default=2000, ge=0)
    label_retry_interval_ms: int = Field(default=200, ge=10)
    # While Redis is down or the product view is behind its record (a rebuild),
    # an order batch is held rather than enriched "unknown" for products the
    # record knows; after this long it goes out with unknown_reason
    # cache_unavailable. Below the consumer's max.poll.interval.ms (300 s).
    hold_max_ms: int = Field(default=120_000, ge=0, le=280_000)
    sales_window_s: int = Field(default=3600, ge=1, validation_alias="VITRINE_SALES_WINDOW_S")
    # A window is kept this long behind the order time of the slowest sales
    # partition the worker reads; a later order for an older window is late (not
    # counted, see streams/worker/windows.py).
    sales_window_expires_s: int = Field(
        default=7 * 24 * 3600, ge=1, validation_alias="VITRINE_SALES_WINDOW_EXPIRES_S"
    )
    # Regions south of the equator: their seasons are the northern ones shifted
    # by half a year (`vitrine report`, `vitrine simulate`, recommendations).
    southern_hemisphere_regions: str = Field(
        default="sa-east,ap-southeast,af-south",
        validation_alias="VITRINE_SOUTHERN_HEMISPHERE_REGIONS",
    )

    @property
    def southern_regions(self) -> frozenset[str]:
        """``southern_hemisphere_regions`` as a set of region names."""
        return frozenset(_split(self.southern_hemisphere_regions))


class IntegritySettings(BaseSettings):
    """Brand protection: when a listing's photo or category is flagged (docs/INTEGRITY.md)."""

    model_config = group_config("VITRINE_")

    # A photo is a near duplicate of another seller's when its perceptual hash is
    # within this many of 64 bits of one of that photo's indexed hashes and their
    # embeddings' cosine is at least this; fitted on the train split with
    # `vitrine evaluate-duplicates` (docs/integrity/duplicates.md).
    near_duplicate_max_hamming: int = Field(default=8, ge=0, le=32)
    near_duplicate_min_cosine: float = Field(default=0.9, ge=-1.0, le=1.0)
    # A declared category that differs from the predicted one is flagged
    # category_mismatch when the predicted category's score is at least this.
    category_mismatch_min_score: float = Field(default=0.9, ge=0.0, le=1.0)
    # Index entries read per photo looked up, at most (bounds a lookup's cost in
    # a catalogue where many photos share a hash band).
    near_duplicate_max_candidates: int = Field(default=2000, ge=1)
    # A photo is also a copy when at least this many of its local features map
    # onto a candidate's by one similarity transform (0: no such verification).
    near_duplicate_min_inliers: int = Field(default=64, ge=0, le=1000)
    # ... or this many with a near hash, whatever the embeddings' cosine (0: off).
    near_duplicate_min_hash_inliers: int = Field(default=25, ge=0, le=1000)
    # Embedding nearest neighbours verified per photo, besides the hash's candidates
    # (0: hash candidates only).
    near_duplicate_verify_candidates: int = Field(default=4, ge=0, le=64)


class RecommendSettings(BaseSettings):
    """``VITRINE_RECOMMEND_*``: co-purchase and popularity scores (streams/worker/recommend.py)."""

    model_config = group_config("VITRINE_RECOMMEND_")

    # An order's weight in co-purchases and popularity halves every this many
    # days of its age (forward decay by event time). The floor keeps scores
    # finite until 2044 (see the module). Offline (`vitrine evaluate-recs`) the
    # model's NDCG@10 moves from 0.483 at 7 days to 0.493 at 365; 30 follows
    # a catalogue's changes within weeks.
    half_life_days: float = Field(default=30.0, ge=7.0)
    # Members kept per sorted set (partners of a product, products of a
    # popularity key): bounds Redis memory to products x this.
    max_members: int = Field(default=100, ge=10)
    # An order with more distinct products than this adds no pairs (their
    # number grows with the square of the basket); it still adds popularity.
    max_basket_lines: int = Field(default=50, ge=2)
    # How long orders-enriched keeps its records (its retention.ms): the
    # recommendations' record, which a rebuild of the sorted sets counts. Over a
    # year, so that a season's popularity is still there when it comes round.
    history_days: int = Field(default=400, ge=1)


class SearchSettings(BaseSettings):
    """``VITRINE_SEARCH_*``: the visual search index (streams/worker/search.py)."""

    model_config = group_config("VITRINE_SEARCH_")

    # HNSW query breadth: more finds more of the true nearest neighbours, slower
    # (`vitrine bench search` measures recall and latency at each).
    expansion: int = Field(default=64, ge=10, le=4096)
    # A directory the worker saves its search index into at stop, with the topic
    # offsets it covers, and loads at start: then only later records are read.
    # One per worker (not shared). Unset: every start reads the whole topic.
    snapshot_dir: Path | None = None


class WebSettings(BaseSettings):
    """``VITRINE_WEB_*``: the worker's HTTP server (metrics, readiness, the API)."""

    model_config = group_config("VITRINE_WEB_")

    host: str = "127.0.0.1"
    port: int = 6066


class ConsoleSettings(BaseSettings):
    """``VITRINE_CONSOLE_*``: the reviewers' web console (``vitrine console``, streams/console)."""

    model_config = group_config("VITRINE_CONSOLE_")

    host: str = "127.0.0.1"
    port: int = Field(default=8070, ge=0, le=65535)
    # What reviewers sign in with, and the key that signs their session cookies.
    # No default: the console refuses to start without one unless `dev` is on
    # and it listens on 127.0.0.1 only (then it makes one up and logs it).
    secret: SecretStr = SecretStr("")
    dev: bool = False
    # The console's consumer group on the review topics: its committed offsets
    # say which flagged items are still undecided.
    group_id: str = "vitrine-console"
    # Pending items held in memory; past this the console stops reading until
    # reviewers decide some (the rest wait on Kafka, uncommitted).
    max_items: int = Field(default=50_000, ge=1)
    page_size: int = Field(default=50, ge=1, le=500)
    session_ttl_s: int = Field(default=12 * 3600, ge=60)
    # Failed sign-ins allowed per client address in `signin_window_s`; past it
    # the console answers 429 until the oldest failure leaves the window.
    signin_max_failures: int = Field(default=5, ge=1)
    signin_window_s: int = Field(default=300, ge=1)


class Settings(BaseSettings):
    """Frozen configuration: the groups, and what belongs to the whole process."""

    model_config = group_config("VITRINE_")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    orders: OrderSettings = Field(default_factory=OrderSettings)
    integrity: IntegritySettings = Field(default_factory=IntegritySettings)
    recommend: RecommendSettings = Field(default_factory=RecommendSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    # Faust's data directory (faust/) and the TensorRT engine cache (trt-cache/);
    # the local stack keeps its servers' data here too.
    state_dir: Path = DEFAULT_STATE_DIR
    shutdown_timeout_s: float = 30.0
    # Static group membership (Kafka's group.instance.id): a worker started again
    # with the same id takes its partitions back at once, without a rebalance.
    # Sent as "<id>-<web port>"; unset: the host name; empty: off.
    worker_instance_id: str | None = Field(
        default=None, max_length=249, pattern=r"^[A-Za-z0-9._-]*$"
    )
    log_level: str = "INFO"

    @property
    def group_instance_id(self) -> str | None:
        """The worker's ``group.instance.id`` in both its groups; None: static membership off.

        ``worker_instance_id`` (unset: the host name) and the web port: stable
        across restarts of a container or StatefulSet pod, and never shared by
        two workers on one host, which cannot bind one port (two live members
        with one id would take each other's place in the group over and over).
        The port is part of it because Faust hands a returning member the
        assignment made for the web URL it had, and refuses one made for
        another (``assert metadata.url == str(self._url)`` in
        faust/assignor/partition_assignor.py): such a worker hangs unready.
        """
        base = self.worker_instance_id
        if base is None:
            base = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "worker"
        return f"{base[:240]}-{self.web.port}" if base else None


def env_fields(cls: type[BaseSettings] = Settings) -> dict[str, tuple[str, ...]]:
    """Each ``VITRINE_*`` variable ``cls`` reads -> its path (``("kafka", "app_id")``)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, field in cls.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseSettings):
            out |= {var: (name, *path) for var, path in env_fields(kind).items()}
        elif isinstance(field.validation_alias, str):
            out[field.validation_alias.upper()] = (name,)
        else:
            out[(cls.model_config.get("env_prefix", "") + name).upper()] = (name,)
    return out


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Settings from the ``VITRINE_*`` entries of ``env`` alone: not the process's, nor ``.env``."""
    # Validating a dict, unlike calling the classes, reads no environment; every
    # group is given so that none is made by its default factory (which would).
    data: dict[str, Any] = {name: {} for name in _groups()}
    for var, path in env_fields().items():
        if var in env:
            *group, name = path
            (data[group[0]] if group else data)[name] = env[var]
    return Settings.model_validate(data)


def _groups() -> dict[str, type[BaseSettings]]:
    return {
        name: kind
        for name, field in Settings.model_fields.items()
        if isinstance(kind := field.annotation, type) and issubclass(kind, BaseSettings)
    }


@functools.cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
