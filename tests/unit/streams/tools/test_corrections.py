"""``vitrine corrections export``: corrected photos as a class-per-folder data set and a CSV."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from inference.samples import SAMPLES_DIR
from schemas import codec
from streams.tools.corrections import COLUMNS, export_corrections
from streams.tools.events import make_listing
from tests.unit.streams.worker.test_corrections import correction

BANANA = (SAMPLES_DIR / "Banana_001.jpg").read_bytes()
LEMON = (SAMPLES_DIR / "Lemon_001.jpg").read_bytes()


def _listing(product_id: str, image: bytes | None = None) -> tuple[bytes, bytes]:
    uri = None if image is not None else "https://images.example.com/x.jpg"
    return product_id.encode(), codec.encode(make_listing(product_id, image=image, uri=uri))


def test_corrected_photos_found_inline_are_written_under_their_label(tmp_path: Path) -> None:
    banana, lemon = hashlib.sha256(BANANA).hexdigest(), hashlib.sha256(LEMON).hexdigest()
    unseen = "f" * 64
    decisions = [
        correction(product_id="p1", image_sha256=banana, label="Plantain/green"),
        correction("not_a_product", product_id="p2", image_sha256=unseen),
        correction("duplicate_dismissed", product_id="p3", image_sha256=lemon, duplicate_of="p1"),
    ]
    corrections = [(c.product_id.encode(), codec.encode(c)) for c in decisions]
    listings = [
        _listing("p1", BANANA),
        _listing("p4", BANANA),  # the same photo again: written once
        _listing("p3", LEMON),  # a pair decision labels no photo
        _listing("p5"),  # by URI: not fetched
        (b"bad", b"{not json"),
    ]
    result = export_corrections(corrections, listings, tmp_path)
    assert (result.corrected, result.written) == (2, 1)
    written = tmp_path / "Plantain_green" / f"{banana}.jpg"
    assert written.read_bytes() == BANANA
    assert sorted(p.name for p in tmp_path.rglob("*.jpg")) == [f"{banana}.jpg"]
    with result.csv_path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == COLUMNS
    by_sha = {r["image_sha256"]: r for r in rows}
    assert set(by_sha) == {banana, unseen}
    assert (by_sha[banana]["label"], by_sha[banana]["path"]) == (
        "Plantain/green",
        f"Plantain_green/{banana}.jpg",
    )
    assert (by_sha[unseen]["category"], by_sha[unseen]["path"]) == ("other", "")
    assert by_sha[banana]["decided_at"] == "2026-11-24T10:00:00Z"
    assert by_sha[banana]["reviewer"] == "rev-1"
