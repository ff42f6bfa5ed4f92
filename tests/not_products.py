"""Images that show no product at all, for the tests of the review flags."""

from __future__ import annotations

import cv2
import numpy as np


def not_products() -> dict[str, bytes]:
    """PNG images that are no product at all: noise, a checkerboard, a printed page."""
    rng = np.random.default_rng(0)
    checker = (np.indices((300, 300)).sum(axis=0) // 30 % 2 * 255).astype(np.uint8)
    page = np.full((300, 300, 3), 255, np.uint8)
    cv2.putText(page, "INVOICE 2026", (10, 150), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 3)
    images = {
        "noise": rng.integers(0, 256, (300, 300, 3), dtype=np.uint8),
        "checkerboard": np.dstack([checker] * 3),
        "page": page,
    }
    return {name: cv2.imencode(".png", image)[1].tobytes() for name, image in images.items()}
