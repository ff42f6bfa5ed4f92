"""Typed records of vitrine's events, mirroring the JSON Schema files in ``schemas/json/``.

Every record is a frozen, keyword-only ``msgspec.Struct``: decoding and validating an
order costs a few microseconds (see :mod:`schemas.codec`), far below the rest of its
path. Unknown fields are ignored on decode, so a producer may add optional fields
without breaking consumers. The constraints (``msgspec.Meta``) are the ones the JSON
Schema files state; ``tests/unit/schemas/test_contract_sync.py`` keeps both in step, and
``python -m schemas.json_schema --write`` regenerates the files from these types.

Lists in events are tuples here so that a record is immutable all the way down; they
are arrays on the wire.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "RECORD_TYPES",
    "SCHEMA_VERSION",
    "CategorySales",
    "CategoryStatus",
    "DuplicateOf",
    "EnrichedItem",
    "EnrichedOrder",
    "Label",
    "LabelCorrection",
    "LabelDecision",
    "ListingFingerprint",
    "ListingSource",
    "OrderEvent",
    "OrderItem",
    "PhotoFingerprint",
    "ProductEmbedding",
    "ProductImageEvent",
    "ProductLabelled",
    "Record",
    "Season",
    "Timings",
    "UnknownReason",
]

SCHEMA_VERSION = 1
"""The ``schema_version`` this code writes and the newest one it reads."""

# Reusable constrained types. The descriptions end up in the JSON Schema files.
SchemaVersion = Annotated[
    int,
    Meta(
        ge=1,
        description=(
            "Major version of the event contract. Consumers reject versions newer "
            "than they support (error code schema.version_unsupported)."
        ),
    ),
]
EventId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        description=(
            "Unique id of the event; outputs carry their input's event_id so that a "
            "consumer can de-duplicate (delivery is at-least-once)."
        ),
    ),
]
Timestamp = Annotated[
    datetime,
    Meta(tz=True, description="RFC 3339 date-time with an offset, e.g. 2026-11-24T06:04:00Z."),
]
Id = Annotated[str, Meta(min_length=1, max_length=128)]
Score = Annotated[float, Meta(ge=0.0, le=1.0)]
Millis = Annotated[float, Meta(ge=0.0)]
# Category and region are parts of the category-sales key ``category|region|window_start``.
KeyPart = Annotated[str, Meta(min_length=1, max_length=64, pattern="^[^|]+$")]
Currency = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=3,
        pattern="^[A-Z]{3}$",
        description="ISO 4217 currency code, e.g. EUR.",
    ),
]
Quantity = Annotated[int, Meta(ge=1, le=1_000_000)]
Price = Annotated[float, Meta(ge=0.0, le=1_000_000_000.0)]
Money = Annotated[float, Meta(ge=0.0)]
Sha256 = Annotated[
    str,
    Meta(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$", description="Lower-case hex."),
]

Hash64 = Annotated[
    int,
    # msgspec states no bound past int64 in a schema; its decoder refuses 2**64 and more.
    Meta(ge=0, description="A 64-bit perceptual hash, as an unsigned integer (below 2**64)."),
]

CategoryStatus = Literal["labelled", "corrected", "unknown"]
UnknownReason = Literal["not_labelled", "cache_unavailable"]
Season = Literal["winter", "spring", "summer", "autumn"]
LabelDecision = Literal[
    "accept", "relabel", "not_a_product", "duplicate_confirmed", "duplicate_dismissed"
]


class ProductImageEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A new or changed product listing with its image.

    Topic product-images, key product_id. Exactly one of image_b64 and image_uri is set
    (non-null).
    """

    schema_version: SchemaVersion
    event_id: EventId
    occurred_at: Annotated[
        datetime, Meta(tz=True, description="When the listing changed (RFC 3339).")
    ]
    product_id: Id
    title: Annotated[str, Meta(max_length=512)] | None = None
    seller_id: Id | None = None
    image_b64: (
        Annotated[
            str,
            Meta(
                min_length=1,
                description=(
                    "The image file (JPEG, PNG, WebP or BMP), standard base64 with padding, "
                    "no line breaks."
                ),
            ),
        ]
        | None
    ) = None
    image_uri: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=2048,
                description=(
                    "Where to fetch the image: https://, http:// to an allow-listed host, "
                    "or file:// under the worker's configured root."
                ),
            ),
        ]
        | None
    ) = None
    content_type: Annotated[str, Meta(max_length=128)] | None = None
    attributes: Annotated[dict[str, str], Meta(max_length=64)] | None = None
    declared_category: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=64,
                description=(
                    "The product category the seller declares (e.g. dairy); a confident "
                    "prediction of another category flags the listing category_mismatch."
                ),
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        # msgspec turns this ValueError into a ValidationError on decode.
        if (self.image_b64 is None) == (self.image_uri is None):
            raise ValueError("exactly one of `image_b64` and `image_uri` must be set")


class Label(msgspec.Struct, frozen=True, kw_only=True):
    """One of the model's top-k labels with its probability."""

    label: Annotated[str, Meta(min_length=1, max_length=256)]
    score: Score


class Timings(msgspec.Struct, frozen=True, kw_only=True):
    """Where the time of one labelling went, in milliseconds (0 for work a cache hit skipped)."""

    decode_ms: Millis
    inference_ms: Millis
    end_to_end_ms: Millis


class DuplicateOf(msgspec.Struct, frozen=True, kw_only=True):
    """The earlier listing, by another seller, whose photo this listing's photo copies."""

    product_id: Id
    seller_id: Id
    image_sha256: Annotated[
        Sha256, Meta(description="The earlier listing's image (lower-case hex).")
    ]
    match: Annotated[
        Literal["exact", "near"],
        Meta(
            description="exact: the same image file (sha256); near: the same photo re-encoded,"
            " resized, cropped, mirrored or lightly edited."
        ),
    ]
    hamming: Annotated[
        int,
        Meta(ge=0, le=64, description="Bits between the photos' perceptual hashes (of 64)."),
    ]
    cosine: (
        Annotated[
            float,
            Meta(ge=-1.0, le=1.0, description="Cosine of the model's embeddings of the photos."),
        ]
        | None
    ) = None
    inliers: (
        Annotated[
            int,
            Meta(
                ge=0,
                le=1000,
                description=(
                    "Local features (ORB keypoints) of this photo that map onto the earlier"
                    " photo's by one similarity transform; null when not verified."
                ),
            ),
        ]
        | None
    ) = None
    candidate: (
        Annotated[
            Literal["hash", "embedding"],
            Meta(
                description=(
                    "How the earlier photo was found: a near perceptual hash, or among the"
                    " nearest embeddings (a border, crop or rotation moved the hash)."
                )
            ),
        ]
        | None
    ) = None
    accepted_by: (
        Annotated[
            Literal["hash", "features"],
            Meta(
                description=(
                    "Which test judged it a copy: hash (near hash and embedding cosine) or"
                    " features (enough inliers); null for an exact match."
                )
            ),
        ]
        | None
    ) = None


class ListingSource(msgspec.Struct, frozen=True, kw_only=True):
    """Where the labelled listing (its ProductImageEvent, with the photo) is on Kafka."""

    topic: Annotated[str, Meta(min_length=1, max_length=249)]
    partition: Annotated[int, Meta(ge=0)]
    offset: Annotated[int, Meta(ge=0)]


class ProductLabelled(msgspec.Struct, frozen=True, kw_only=True):
    """The labels and category of a product image.

    Topic product-labels, key product_id.
    """

    schema_version: SchemaVersion
    event_id: EventId
    occurred_at: Annotated[
        datetime, Meta(tz=True, description="occurred_at of the input ProductImageEvent.")
    ]
    product_id: Id
    labels: Annotated[tuple[Label, ...], Meta(max_length=100, description="Best first.")]
    category: Annotated[str, Meta(min_length=1, max_length=64)]
    category_score: Score
    model_name: Annotated[str, Meta(min_length=1, max_length=128)]
    model_version: Annotated[str, Meta(min_length=1, max_length=64)]
    image_sha256: Sha256
    cached: Annotated[
        bool,
        Meta(
            description="True when the image was not inferred for this event: its result came"
            " from the image-hash cache, or from the same image's inference already under way"
            " in this worker."
        ),
    ] = False
    flags: Annotated[
        tuple[str, ...],
        Meta(
            max_length=32,
            description="Quality, review and integrity flags, e.g. low_resolution, "
            "uncertain_kind, unknown_product, duplicate_image, near_duplicate, category_mismatch.",
        ),
    ] = ()
    timings: Timings
    labelled_at: Timestamp
    seller_id: (
        Annotated[Id, Meta(description="seller_id of the input ProductImageEvent.")] | None
    ) = None
    title: (
        Annotated[str, Meta(max_length=512, description="title of the input ProductImageEvent.")]
        | None
    ) = None
    declared_category: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=64,
                description="declared_category of the input ProductImageEvent.",
            ),
        ]
        | None
    ) = None
    duplicate_of: (
        Annotated[
            DuplicateOf,
            Meta(
                description="Evidence of duplicate_image or near_duplicate: the other seller's"
                " listing with the same photo; null when neither flag is set."
            ),
        ]
        | None
    ) = None
    corrected_by: (
        Annotated[
            Id,
            Meta(
                description="The reviewer whose LabelCorrection gave this label and category;"
                " null for the model's own label."
            ),
        ]
        | None
    ) = None
    correction_id: (
        Annotated[
            Id,
            Meta(description="event_id of that LabelCorrection; null for the model's own label."),
        ]
        | None
    ) = None
    source: (
        Annotated[
            ListingSource,
            Meta(
                description="The input listing's topic, partition and offset, so that a review"
                " tool can fetch its photo; set on the review topics' copies only."
            ),
        ]
        | None
    ) = None


class ProductEmbedding(msgspec.Struct, frozen=True, kw_only=True):
    """The compact visual-search descriptor of a product's image.

    Topic product-embeddings (compacted), key product_id: the latest descriptor of
    every product, which each worker reads whole into its search index at start.
    """

    schema_version: SchemaVersion
    event_id: EventId
    occurred_at: Annotated[
        datetime, Meta(tz=True, description="occurred_at of the input ProductImageEvent.")
    ]
    product_id: Id
    image_sha256: Sha256
    category: Annotated[str, Meta(min_length=1, max_length=64)]
    label: Annotated[str, Meta(min_length=1, max_length=128, description="The top-1 label.")]
    model_name: Annotated[str, Meta(min_length=1, max_length=128)]
    model_version: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            description="Descriptors of different model versions are not comparable.",
        ),
    ]
    dims: Annotated[int, Meta(ge=1, le=4096)]
    vector_f16_b64: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=16384,
            description=(
                "The unit-length descriptor: dims little-endian IEEE float16 values, "
                "standard base64 with padding."
            ),
        ),
    ]


class PhotoFingerprint(msgspec.Struct, frozen=True, kw_only=True):
    """A photo's perceptual hashes and the model's embedding of it (near-duplicate checks)."""

    phash: Annotated[Hash64, Meta(description="DCT hash of the whole photo.")]
    mirror: Annotated[Hash64, Meta(description="DCT hash of its mirror image.")]
    crops: Annotated[
        tuple[Hash64, ...],
        Meta(max_length=64, description="DCT hashes of its grid of 90% crops (5x5)."),
    ] = ()
    embedding_f16_b64: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=16384,
                description=(
                    "The model's unit-length embedding: little-endian IEEE float16 values, "
                    "standard base64 with padding; null when the model has none."
                ),
            ),
        ]
        | None
    ) = None
    features_b64: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=12000,
                description=(
                    "Its local features (at most 200 ORB keypoints): per keypoint its x, y"
                    " as little-endian uint16, then per keypoint its 32-byte descriptor;"
                    " standard base64 with padding; null when not computed."
                ),
            ),
        ]
        | None
    ) = None


class ListingFingerprint(msgspec.Struct, frozen=True, kw_only=True):
    """A seller's first listing of a photo, with the photo's fingerprint.

    Topic listing-fingerprints (compacted), key ``<image_sha256>|<seller_id>``:
    written when a worker first sees that seller list that photo, so compaction
    keeps one record per (photo, seller). Every worker reads the whole topic
    into the index its duplicate checks query.
    """

    schema_version: SchemaVersion
    event_id: Annotated[
        str,
        Meta(
            min_length=1, max_length=128, description="event_id of the listing's ProductImageEvent."
        ),
    ]
    occurred_at: Annotated[
        datetime, Meta(tz=True, description="occurred_at of the listing's ProductImageEvent.")
    ]
    image_sha256: Sha256
    seller_id: Id
    product_id: Annotated[Id, Meta(description="The seller's first product with this photo.")]
    listed_at_ms: Annotated[
        int,
        Meta(ge=0, description="When the worker first saw the seller list it, ms since the epoch."),
    ]
    model_version: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            description="Model of the embedding: embeddings of different versions do not compare.",
        ),
    ]
    fingerprint: (
        Annotated[
            PhotoFingerprint,
            Meta(
                description="null when the worker had none (a cached label of an unindexed photo)."
            ),
        ]
        | None
    ) = None


class OrderItem(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an order."""

    product_id: Id
    quantity: Quantity
    unit_price: Annotated[Price, Meta(description="Price of one unit in the order's currency.")]


class OrderEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An order placed by a customer.

    Topic orders, key order_id.
    """

    schema_version: SchemaVersion
    event_id: EventId
    occurred_at: Annotated[
        datetime, Meta(tz=True, description="When the order service emitted the event.")
    ]
    order_id: Id
    customer_id: Id | None = None
    region: Annotated[KeyPart, Meta(description="Sales region, e.g. eu-north.")]
    currency: Currency
    created_at: Annotated[datetime, Meta(tz=True, description="When the order was placed.")]
    items: Annotated[tuple[OrderItem, ...], Meta(min_length=1, max_length=1000)]


class EnrichedItem(msgspec.Struct, frozen=True, kw_only=True):
    """An order line with its product's category.

    category is "unknown" when category_status is unknown, and unknown_reason says why;
    category_status is corrected when a reviewer's LabelCorrection gave the category.
    """

    product_id: Id
    quantity: Quantity
    unit_price: Price
    line_total: Annotated[Money, Meta(description="quantity * unit_price.")]
    category: Annotated[str, Meta(min_length=1, max_length=64)]
    category_score: Score | None = None
    model_version: Annotated[str, Meta(max_length=64)] | None = None
    category_status: CategoryStatus
    unknown_reason: Annotated[
        UnknownReason | None,
        Meta(description="Why the category is unknown; null when it is labelled or corrected."),
    ] = None


class EnrichedOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order whose lines carry their products' categories.

    Topic orders-enriched, key order_id.
    """

    schema_version: SchemaVersion
    event_id: EventId
    occurred_at: Annotated[
        datetime, Meta(tz=True, description="occurred_at of the input OrderEvent.")
    ]
    order_id: Id
    customer_id: Id | None = None
    region: KeyPart
    currency: Currency
    created_at: Timestamp
    items: Annotated[tuple[EnrichedItem, ...], Meta(min_length=1, max_length=1000)]
    order_total: Annotated[Money, Meta(description="Sum of the items' line_total.")]
    enriched_at: Timestamp


class CategorySales(msgspec.Struct, frozen=True, kw_only=True):
    """Sales of one category in one region over one tumbling window.

    Topic category-sales (compacted), key category|region|window_start
    (schemas.sales.category_sales_key). Every update of a window has the same key and
    event_id and replaces the earlier one; different windows never share a key.
    """

    schema_version: SchemaVersion
    event_id: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=128,
            description=(
                "Deterministic: schemas.sales.category_sales_event_id(category, region, "
                "window_start), so every update of a window has the same id."
            ),
        ),
    ]
    occurred_at: Annotated[
        datetime,
        Meta(tz=True, description="Latest occurred_at of the orders counted so far."),
    ]
    category: KeyPart
    region: KeyPart
    window_start: Annotated[datetime, Meta(tz=True, description="Inclusive, RFC 3339 UTC.")]
    window_end: Annotated[datetime, Meta(tz=True, description="Exclusive, RFC 3339 UTC.")]
    season: Annotated[
        Season,
        Meta(
            description=(
                "Meteorological season (northern hemisphere) of window_start in UTC: "
                "winter Dec-Feb, spring Mar-May, summer Jun-Aug, autumn Sep-Nov."
            )
        ),
    ]
    orders: Annotated[int, Meta(ge=0, description="Orders with at least one line here.")]
    units: Annotated[int, Meta(ge=0)]
    revenue: Annotated[Money, Meta(description="Sum of line_total, in currency.")]
    currency: Currency
    updated_at: Annotated[datetime, Meta(tz=True, description="When this update was emitted.")]


_CATEGORY_DECISIONS = ("accept", "relabel")
_PAIR_DECISIONS = ("duplicate_confirmed", "duplicate_dismissed")


class LabelCorrection(msgspec.Struct, frozen=True, kw_only=True):
    """A reviewer's decision about a labelled listing.

    Topic label-corrections (compacted). Key product_id for the label decisions
    (accept, relabel, not_a_product: the product's latest one stands), and
    ``<product_id>|<duplicate_of>`` for the duplicate decisions (every pair's latest
    one stands): schemas.corrections.correction_key. accept and relabel set category;
    not_a_product sets none (the category becomes "other"); the duplicate decisions
    set duplicate_of and no category.
    """

    schema_version: SchemaVersion
    event_id: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=128,
            description=(
                "The decision's id (a UUID): a decision sent again keeps it, and the "
                "ProductLabelled the worker emits for it carries it as correction_id."
            ),
        ),
    ]
    occurred_at: Annotated[
        datetime, Meta(tz=True, description="When the reviewer decided (RFC 3339).")
    ]
    product_id: Annotated[Id, Meta(description="The listing the decision is about.")]
    image_sha256: Annotated[Sha256, Meta(description="Its photo as reviewed (lower-case hex).")]
    decision: Annotated[
        LabelDecision,
        Meta(
            description=(
                "accept: the category (and label) stand as given; relabel: they replace "
                "the model's; not_a_product: the photo shows no product (category other); "
                "duplicate_confirmed / duplicate_dismissed: the listing does / does not copy "
                "duplicate_of."
            )
        ),
    ]
    category: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=64,
                description="The product's category; set exactly for accept and relabel.",
            ),
        ]
        | None
    ) = None
    label: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=256,
                description="The top-1 label for accept and relabel; null: the category only.",
            ),
        ]
        | None
    ) = None
    duplicate_of: (
        Annotated[
            Id,
            Meta(
                description=(
                    "product_id of the other listing; set exactly for the duplicate decisions."
                )
            ),
        ]
        | None
    ) = None
    reviewer: Annotated[Id, Meta(description="Who decided.")]
    model_name: Annotated[
        str, Meta(min_length=1, max_length=128, description="The model whose label was reviewed.")
    ]
    model_version: Annotated[str, Meta(min_length=1, max_length=64)]
    source_flags: Annotated[
        tuple[str, ...],
        Meta(max_length=32, description="The flags that sent the listing to review."),
    ] = ()

    def __post_init__(self) -> None:
        # msgspec turns these ValueErrors into a ValidationError on decode.
        if (self.category is not None) != (self.decision in _CATEGORY_DECISIONS):
            raise ValueError("`category` is set exactly for the decisions accept and relabel")
        if (self.duplicate_of is not None) != (self.decision in _PAIR_DECISIONS):
            raise ValueError(
                "`duplicate_of` is set exactly for duplicate_confirmed and duplicate_dismissed"
            )


Record = (
    ProductImageEvent
    | ProductLabelled
    | OrderEvent
    | EnrichedOrder
    | CategorySales
    | ProductEmbedding
    | ListingFingerprint
    | LabelCorrection
)
"""Any top-level event record."""

RECORD_TYPES: tuple[type[msgspec.Struct], ...] = (
    ProductImageEvent,
    ProductLabelled,
    OrderEvent,
    EnrichedOrder,
    CategorySales,
    ProductEmbedding,
    ListingFingerprint,
    LabelCorrection,
)
"""The top-level records, each with a JSON Schema file ``schemas/json/<Name>.schema.json``."""
