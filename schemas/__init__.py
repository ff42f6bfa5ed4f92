"""Event contracts of vitrine: typed records, JSON codec and dead-letter headers.

Imports only the standard library and msgspec, so an analytics consumer can use it
without Faust or ONNX Runtime. The JSON Schema files in ``schemas/json/`` are the
contract for other languages; ``schemas/README.md`` states the version rules and
``schemas/DEADLETTER.md`` the dead-letter headers.
"""

from schemas.codec import (
    DEFAULT_MAX_IMAGE_BYTES,
    decode,
    decode_category_sales,
    decode_enriched_order,
    decode_inline_image,
    decode_label_correction,
    decode_listing_fingerprint,
    decode_order,
    decode_product_embedding,
    decode_product_image,
    decode_product_labelled,
    encode,
)
from schemas.corrections import correction_key
from schemas.deadletter import DeadLetter, decode_headers, encode_headers
from schemas.errors import SchemaError
from schemas.records import (
    RECORD_TYPES,
    SCHEMA_VERSION,
    CategorySales,
    EnrichedItem,
    EnrichedOrder,
    Label,
    LabelCorrection,
    ListingFingerprint,
    OrderEvent,
    OrderItem,
    PhotoFingerprint,
    ProductEmbedding,
    ProductImageEvent,
    ProductLabelled,
    Record,
    Timings,
)
from schemas.sales import category_sales_event_id, category_sales_key, season_of

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "RECORD_TYPES",
    "SCHEMA_VERSION",
    "CategorySales",
    "DeadLetter",
    "EnrichedItem",
    "EnrichedOrder",
    "Label",
    "LabelCorrection",
    "ListingFingerprint",
    "OrderEvent",
    "OrderItem",
    "PhotoFingerprint",
    "ProductEmbedding",
    "ProductImageEvent",
    "ProductLabelled",
    "Record",
    "SchemaError",
    "Timings",
    "category_sales_event_id",
    "category_sales_key",
    "correction_key",
    "decode",
    "decode_category_sales",
    "decode_enriched_order",
    "decode_headers",
    "decode_inline_image",
    "decode_label_correction",
    "decode_listing_fingerprint",
    "decode_order",
    "decode_product_embedding",
    "decode_product_image",
    "decode_product_labelled",
    "encode",
    "encode_headers",
    "season_of",
]
