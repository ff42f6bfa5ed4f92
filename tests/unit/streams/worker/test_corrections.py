"""Reviewers' decisions: the corrected label, the view every worker keeps, the product state."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from schemas import codec
from schemas.corrections import correction_key
from schemas.records import SCHEMA_VERSION, LabelCorrection
from streams.worker.consumed import ConsumedRecord, Rejected
from streams.worker.corrections import (
    CorrectionsView,
    PhotoCorrection,
    check_correction,
    corrected_record,
)
from streams.worker.imageresult import ImageResult
from streams.worker.state import (
    ProductState,
    decode_product_state,
    encode_product_state,
    product_state_of_record,
)

SHA = hashlib.sha256(b"banana").hexdigest()
OTHER_SHA = hashlib.sha256(b"lemon").hexdigest()
T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)


def correction(decision: str = "relabel", **changes: Any) -> LabelCorrection:
    fields: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": f"c-{decision}-{changes.get('product_id', 'p1')}",
        "occurred_at": T0,
        "product_id": "p1",
        "image_sha256": SHA,
        "decision": decision,
        "category": "produce" if decision in ("accept", "relabel") else None,
        "label": "Plantain" if decision == "relabel" else None,
        "reviewer": "rev-1",
        "model_name": "m",
        "model_version": "v1",
        "source_flags": ("low_confidence",),
    }
    return LabelCorrection(**(fields | changes))


def record(c: LabelCorrection | None, key: str | None = None) -> tuple[bytes, bytes | None]:
    assert c is not None or key is not None
    return (key or correction_key(c)).encode(), None if c is None else codec.encode(c)  # type: ignore[arg-type]


def test_a_relabel_gives_its_product_a_corrected_label_record() -> None:
    made = T0 + timedelta(seconds=3)
    out = corrected_record(correction(), made)
    assert out is not None
    again = codec.decode_product_labelled(codec.encode(out))
    assert (again.product_id, again.category, again.category_score) == ("p1", "produce", 1.0)
    assert [(label.label, label.score) for label in again.labels] == [("Plantain", 1.0)]
    assert (again.corrected_by, again.correction_id) == ("rev-1", "c-relabel-p1")
    assert again.event_id == "c-relabel-p1", "a decision applied twice replaces, never adds"
    assert (again.image_sha256, again.flags, again.labelled_at) == (SHA, (), made)


def test_not_a_product_is_category_other_and_pair_decisions_give_no_label() -> None:
    out = corrected_record(correction("not_a_product"), T0)
    assert out is not None
    assert (out.category, out.labels[0].label) == ("other", "other")
    assert corrected_record(correction("duplicate_dismissed", duplicate_of="p2"), T0) is None


def test_the_product_state_of_a_corrected_label_names_the_reviewer() -> None:
    out = corrected_record(correction(), T0)
    assert out is not None
    got = product_state_of_record(codec.encode(out))
    assert got is not None
    assert got[0] == "p1"
    assert got[1] == ProductState.of(out)
    assert (got[1].category, got[1].corrected_by) == ("produce", "rev-1")
    state = decode_product_state(encode_product_state(got[1]))
    assert state is not None
    assert state.corrected_by == "rev-1"


def test_a_state_written_before_corrections_still_decodes() -> None:
    older = msgspec.msgpack.encode(["produce", 0.9, "v1", 1])
    state = decode_product_state(older)
    assert state == ProductState("produce", 0.9, "v1", 1)
    assert state is not None
    assert state.corrected_by is None


def test_a_photo_correction_replaces_any_models_label_and_its_review_flags() -> None:
    fix = PhotoCorrection.of(correction())
    assert fix is not None
    model = ImageResult(
        labels=(("Banana", 0.4), ("Lemon", 0.3)),
        category="produce-x",
        score=0.5,
        model_name="m2",
        model_version="v9",
        flags=("uncertain_kind", "low_resolution", "uncertain_product"),
        vector="AAAA",
    )
    shown = fix.apply(model)
    assert (shown.label, shown.category, shown.score) == ("Plantain", "produce", 1.0)
    assert shown.flags == ("low_resolution",)
    assert (shown.corrected_by, shown.correction_id) == ("rev-1", "c-relabel-p1")
    assert (shown.model_version, shown.vector) == ("v9", "AAAA"), "still the model's descriptor"


def test_the_view_keeps_each_photos_latest_correction() -> None:
    view = CorrectionsView()
    assert view.for_photo(SHA) is None
    first = correction()
    later = correction(
        "relabel", event_id="c2", occurred_at=T0 + timedelta(hours=1), label="Banana"
    )
    view.apply([record(first)])
    fix = view.for_photo(SHA)
    assert fix is not None
    assert fix.label == "Plantain"
    view.apply([record(later)])  # the same product's later decision replaces it
    fix = view.for_photo(SHA)
    assert fix is not None
    assert fix.label == "Banana"
    assert len(view) == 1
    assert view.for_photo(OTHER_SHA) is None


def test_a_tombstone_withdraws_its_decision_and_another_products_stands() -> None:
    view = CorrectionsView()
    view.apply(
        [
            record(correction()),
            record(correction(product_id="p2", event_id="c-p2", occurred_at=T0 + timedelta(1))),
        ]
    )
    fix = view.for_photo(SHA)
    assert fix is not None
    assert fix.correction_id == "c-p2", "the latest decision about the photo"
    view.apply([record(None, key="p2")])
    fix = view.for_photo(SHA)
    assert fix is not None
    assert fix.correction_id == "c-relabel-p1"
    view.apply([record(None, key="p1")])
    assert view.for_photo(SHA) is None
    assert len(view) == 0


def test_dismissed_pairs_either_way_until_confirmed() -> None:
    view = CorrectionsView()
    dismissed = correction("duplicate_dismissed", duplicate_of="p2")
    view.apply([record(dismissed), (b"p9", b"{not json"), (None, b"{}")])
    assert view.dismissed("p1", "p2")
    assert view.dismissed("p2", "p1")
    assert not view.dismissed("p1", "p3")
    assert view.for_photo(SHA) is None, "a pair decision does not label the photo"
    # The same pair's later decision replaces it (the same key).
    view.apply([record(correction("duplicate_confirmed", duplicate_of="p2"))])
    assert not view.dismissed("p1", "p2")


def test_a_value_that_is_no_decision_is_rejected_with_its_reason_and_a_tombstone_ignored() -> None:
    def consumed(value: bytes) -> ConsumedRecord:
        return ConsumedRecord(b"k", value, "label-corrections", 0, 7, 0)

    good = correction()
    assert check_correction(consumed(codec.encode(good))) == good
    assert check_correction(consumed(b"")) is None
    bad = check_correction(consumed(b'{"decision": "relabel"}'))
    assert isinstance(bad, Rejected)
    assert bad.code.startswith("schema.")
    assert bad.record.offset == 7
    assert isinstance(check_correction(consumed(b"not json")), Rejected)
