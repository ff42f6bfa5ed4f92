"""A reviewer's action on an item, as the LabelCorrection that records it.

The actions are the ones the page offers: accept the model's label, pick
another (one of the top five or any label of the served model's taxonomy),
not a product, and confirm or dismiss a duplicate. A request that does not fit
the item (a pick outside the taxonomy, a duplicate decision on an item with no
duplicate) is refused with a message that names what was wrong.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, get_args

from inference.serving.manifest import ModelManifest, default_model_dir
from schemas.records import SCHEMA_VERSION, LabelCorrection, ProductLabelled

__all__ = ["ACTIONS", "Action", "DecisionError", "Taxonomy", "decide"]

Action = Literal["accept", "relabel", "not_a_product", "duplicate_confirmed", "duplicate_dismissed"]
ACTIONS: tuple[str, ...] = get_args(Action)


class DecisionError(ValueError):
    """The action does not fit the item; the message says why."""


@dataclass(frozen=True)
class Taxonomy:
    """The labels a reviewer may pick, each with its category: the served model's."""

    categories: dict[str, str]

    @classmethod
    def from_model(cls, model_path: Path | None) -> Taxonomy:
        """The labels of the model at ``model_path`` (VITRINE_MODEL_PATH), else the shipped one."""
        manifest = ModelManifest.load(model_path or default_model_dir(), verify_checksum=False)
        return cls(dict(zip(manifest.labels, manifest.categories, strict=True)))

    def search(self, text: str, limit: int = 20) -> list[tuple[str, str]]:
        """Labels containing ``text`` (any case), those that start with it first."""
        needle = text.strip().lower()
        found = [(lab, cat) for lab, cat in self.categories.items() if needle in lab.lower()]
        found.sort(key=lambda lc: (not lc[0].lower().startswith(needle), lc[0].lower()))
        return found[:limit]


def decide(
    item: ProductLabelled,
    action: str,
    *,
    reviewer: str,
    taxonomy: Taxonomy,
    now: datetime,
    label: str | None = None,
) -> LabelCorrection:
    """The decision ``action`` (one of :data:`ACTIONS`) about ``item`` by ``reviewer``."""
    category: str | None = None
    duplicate_of: str | None = None
    if action == "accept":
        label, category = item.labels[0].label if item.labels else None, item.category
    elif action == "relabel":
        if not label or label not in taxonomy.categories:
            raise DecisionError(f"label {label!r} is not in the model's taxonomy")
        category = taxonomy.categories[label]
    elif action == "not_a_product":
        label = None
    elif action in ("duplicate_confirmed", "duplicate_dismissed"):
        if item.duplicate_of is None:
            raise DecisionError(f"{item.product_id} is not flagged as a duplicate")
        label, duplicate_of = None, item.duplicate_of.product_id
    else:
        raise DecisionError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    return LabelCorrection(
        schema_version=SCHEMA_VERSION,
        event_id=str(uuid.uuid4()),
        occurred_at=now,
        product_id=item.product_id,
        image_sha256=item.image_sha256,
        decision=action,  # type: ignore[arg-type]
        category=category,
        label=label,
        duplicate_of=duplicate_of,
        reviewer=reviewer,
        model_name=item.model_name,
        model_version=item.model_version,
        source_flags=item.flags,
    )
