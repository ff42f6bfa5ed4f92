"""Actions become the LabelCorrection the worker applies; misfits are refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import codec
from streams.console.decisions import DecisionError, Taxonomy, decide
from tests.unit.streams.console.records import rec

NOW = datetime(2026, 12, 1, tzinfo=UTC)
TAX = Taxonomy({"Banana": "produce", "Oat-Milk": "dairy"})


def test_each_action_is_a_valid_correction() -> None:
    item = rec("p", flags=("duplicate_image",))
    got = {
        a: decide(item, a, reviewer="r", taxonomy=TAX, now=NOW, label="Oat-Milk")
        for a in (
            "accept",
            "relabel",
            "not_a_product",
            "duplicate_confirmed",
            "duplicate_dismissed",
        )
    }
    assert (got["accept"].category, got["accept"].label) == ("produce", "Banana")
    assert (got["relabel"].category, got["relabel"].label) == ("dairy", "Oat-Milk")
    assert (got["not_a_product"].category, got["not_a_product"].label) == (None, None)
    assert got["duplicate_dismissed"].duplicate_of == "o"
    for c in got.values():
        assert codec.decode_label_correction(codec.encode(c)) == c
        assert c.source_flags == ("duplicate_image",)


def test_misfits_are_refused() -> None:
    with pytest.raises(DecisionError, match="taxonomy"):
        decide(rec("p"), "relabel", reviewer="r", taxonomy=TAX, now=NOW, label="Nope")
    with pytest.raises(DecisionError, match="not flagged as a duplicate"):
        decide(rec("p"), "duplicate_dismissed", reviewer="r", taxonomy=TAX, now=NOW)
    with pytest.raises(DecisionError, match="not one of"):
        decide(rec("p"), "delete", reviewer="r", taxonomy=TAX, now=NOW)


def test_taxonomy_search_puts_prefixes_first() -> None:
    tax = Taxonomy({"Red-Grapefruit": "produce", "Grapes": "produce", "Oat-Milk": "dairy"})
    assert [lab for lab, _ in tax.search("grape")] == ["Grapes", "Red-Grapefruit"]
    assert len(Taxonomy.from_model(None).categories) > 10
