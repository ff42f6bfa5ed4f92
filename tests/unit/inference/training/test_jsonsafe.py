"""json_safe: what training metadata and evaluation reports hold, as strict JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from inference.training.jsonsafe import json_safe


def test_numpy_paths_tuples_and_non_finite_floats_become_strict_json() -> None:
    value = {
        "acc": np.float32(0.5),
        "n": np.int64(3),
        "matrix": np.array([[1, 2], [3, 4]]),
        "scores": np.array([0.25, math.nan]),
        "dir": Path("/tmp/model"),
        "pair": (1, math.inf),
        7: [np.bool_(True)],
    }
    out = json_safe(value)
    assert out == {
        "acc": 0.5,
        "n": 3,
        "matrix": [[1, 2], [3, 4]],
        "scores": [0.25, None],
        "dir": "/tmp/model",
        "pair": [1, None],
        "7": [True],
    }
    assert json.loads(json.dumps(out, allow_nan=False)) == out
