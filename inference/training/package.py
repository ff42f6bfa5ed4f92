"""Write a trained model directory: ``model.onnx`` plus a ``manifest.json`` the engine loads.

The manifest is the backbone's (same input, preprocessing and outputs, written
by :class:`inference.serving.manifest.ModelManifest`) with the trained model's own
name, version, checksum, labels and categories. Two extra top-level keys,
which the engine ignores, carry what training knows: ``coarse`` (the coarse
class of each label, when the data has one) and ``training`` (data hash,
split sizes, hyper-parameters, validation metrics, timings). The version is
derived from the weights and the data, so the same run gives the same version
and any change of either gives a new one (and misses the label cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from inference.serving.manifest import FORMAT_VERSION, MANIFEST_FILE, ModelManifest, sha256_file
from inference.training.jsonsafe import json_safe

__all__ = ["MODEL_FILE", "model_version", "write_model_dir"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"


def model_version(onnx_bytes: bytes, data_hash: str) -> str:
    """Version string: ``ft-`` and 12 hex digits of a hash of the graph and the data."""
    digest = hashlib.sha256(onnx_bytes)
    digest.update(data_hash.encode())
    return f"ft-{digest.hexdigest()[:12]}"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_model_dir(
    out_dir: Path,
    model: onnx.ModelProto,
    *,
    base: ModelManifest,
    name: str,
    labels: Sequence[str],
    categories: Sequence[str],
    coarse: Sequence[str] = (),
    data_hash: str,
    training: Mapping[str, Any],
    description: str = "",
) -> ModelManifest:
    """Save ``model`` and its manifest into ``out_dir``; return the loaded, verified manifest."""
    if len(labels) != len(categories):
        raise ValueError(f"{len(labels)} labels but {len(categories)} categories")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_bytes = model.SerializeToString()
    onnx_path = out_dir / MODEL_FILE
    _atomic_write(onnx_path, onnx_bytes)
    version = model_version(onnx_bytes, data_hash)
    source = {
        "base_model": {
            "name": base.name,
            "version": base.version,
            "sha256": base.sha256,
        },
        "trained_by": "vitrine train",
        "data_hash": data_hash,
    }
    manifest = base.replace(
        name=name,
        version=version,
        sha256=sha256_file(onnx_path),
        path=onnx_path,
        labels=tuple(labels),
        categories=tuple(categories),
        fp16_path=None,
        description=description
        or f"{name}: {len(labels)} classes, {base.name} backbone with a trained head",
        source=source,
    )
    doc = manifest.to_dict()
    if doc.get("format_version") != FORMAT_VERSION:  # pragma: no cover - a manifest.py change
        raise ValueError("manifest format changed; update inference.training.package")
    if coarse:
        doc["coarse"] = list(coarse)
    doc["training"] = dict(training)
    text = json.dumps(json_safe(doc), indent=2, ensure_ascii=False, allow_nan=False)
    _atomic_write(out_dir / MANIFEST_FILE, (text + "\n").encode("utf-8"))
    loaded = ModelManifest.load(out_dir)
    logger.info("wrote %s (%s %s, %d classes)", out_dir, name, version, len(labels))
    return loaded
