"""JSON-safe copies of the nested values training and evaluation write.

The training metadata (into ``manifest.json``) and the evaluation report hold
numpy scalars, tuples, paths and the odd NaN (a metric over no samples); both
go through :func:`json_safe` so they are written the same way, as strict JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["json_safe"]


def json_safe(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples, arrays -> lists, paths -> str, numpy -> Python."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
