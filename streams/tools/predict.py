"""``vitrine predict``: label image files with the worker's engine, without Kafka.

A plain function that returns an exit code (0 success, 1 some images failed,
2 the model or the options are unusable); :mod:`streams.tools.cli` wires it
into the click group. The engine is the worker's own (:mod:`streams.worker.model`).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

import msgspec

from inference.serving.engine import Prediction
from inference.serving.errors import InferenceError, ModelError
from streams.settings import Settings, get_settings
from streams.worker.imageresult import ImageResult
from streams.worker.model import build_engine, image_limits

__all__ = ["EXIT_OK", "EXIT_SOME_FAILED", "EXIT_UNUSABLE", "run_predict"]

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_SOME_FAILED, EXIT_UNUSABLE = 0, 1, 2


def _error_dict(code: str, message: str, *, retriable: bool = False) -> dict[str, Any]:
    return {"code": code, "message": message, "retriable": retriable}


def _read(path: Path) -> bytes | dict[str, Any]:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return _error_dict("file.not_found", f"no such file: {path}")
    except IsADirectoryError:
        return _error_dict("file.unreadable", f"{path} is a directory")
    except OSError as exc:
        return _error_dict("file.unreadable", f"cannot read {path}: {exc.strerror or exc}")


def _print_table(path: Path, item: ImageResult | dict[str, Any], out: TextIO) -> None:
    print(str(path), file=out)
    if not isinstance(item, ImageResult):
        print(f"  ERROR {item['code']}: {item['message']}", file=out)
        return
    for label, score in item.labels:
        print(f"  {score:7.2%}  {label}", file=out)
    print(f"  category: {item.category} ({item.score:.2%})", file=out)
    if item.flags:
        print(f"  flags: {', '.join(item.flags)}", file=out)


def run_predict(
    paths: list[Path],
    *,
    as_json: bool,
    top_k: int,
    model_dir: Path | None,
    settings: Settings | None = None,
    out: TextIO | None = None,
) -> int:
    """Label image files; print a table, or one JSON object per image (JSON Lines).

    Returns 0 when every image was labelled, 1 when some failed (each failure is
    printed with its error code), 2 when the model cannot be loaded.
    """
    out = out or sys.stdout
    settings = settings or get_settings()
    if not paths:
        print("no images given", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        engine = build_engine(settings, model_dir=model_dir, top_k=top_k)
    except (ModelError, ValueError) as exc:
        print(f"cannot load the model: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    limits = image_limits(settings)
    failed = 0
    batch_size = settings.model.max_batch_size
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        blobs = [_read(p) for p in chunk]
        readable = [b for b in blobs if isinstance(b, bytes)]
        results = iter(engine.predict_bytes(readable, limits).items)
        for path, blob in zip(chunk, blobs, strict=True):
            item: Prediction | InferenceError | dict[str, Any] = (
                next(results) if isinstance(blob, bytes) else blob
            )
            shown: ImageResult | dict[str, Any]
            if isinstance(item, Prediction):
                # The image cache's form of a prediction: one shape for both.
                shown = ImageResult.of(item)
                record = {"path": str(path)} | msgspec.to_builtins(shown)
            else:
                failed += 1
                shown = item.to_dict() if isinstance(item, InferenceError) else item
                record = {"path": str(path), "error": shown}
            if as_json:
                print(json.dumps(record, ensure_ascii=False), file=out)
            else:
                _print_table(path, shown, out)
    return EXIT_SOME_FAILED if failed else EXIT_OK
