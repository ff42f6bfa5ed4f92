"""The model card: written whole, or between its markers with the prose around kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.training.model_card import BEGIN, END, write_card

CARD = "# Model card: m\n\n## Evaluation (val, the served graph)\n\n| a | b |\n"


def test_a_new_file_gets_the_whole_card(tmp_path: Path) -> None:
    path = write_card(tmp_path / "cards" / "MODEL_CARD.md", CARD)
    assert path.read_text(encoding="utf-8") == CARD


def test_a_page_with_markers_keeps_its_prose(tmp_path: Path) -> None:
    page = tmp_path / "MODEL.md"
    page.write_text(f"# The shipped models\n\nProse.\n\n{BEGIN}\nold card\n{END}\n\nMore prose.\n")
    write_card(page, CARD)
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# The shipped models\n\nProse.\n\n")
    assert text.endswith(f"{END}\n\nMore prose.\n")
    assert "old card" not in text
    # One level down inside the page: its title stays the only top-level heading.
    assert "\n## Model card: m\n" in text
    assert "\n### Evaluation (val, the served graph)\n" in text
    write_card(page, CARD)  # again: the same page, not a second card
    assert page.read_text(encoding="utf-8") == text


def test_another_document_is_never_overwritten(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text("# Something else\n", encoding="utf-8")
    with pytest.raises(ValueError, match="markers"):
        write_card(page, CARD)
    assert page.read_text(encoding="utf-8") == "# Something else\n"
    card = write_card(tmp_path / "MODEL_CARD.md", CARD)
    assert (
        write_card(card, CARD.replace("| a | b |", "| c | d |")).read_text().endswith("| c | d |\n")
    )
