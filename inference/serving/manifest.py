"""Model manifests: what a model directory holds and how to feed its ONNX graph.

A model directory is self-contained, so a shipped model and a trained one load
the same way::

    <model_dir>/manifest.json   name, version, sha256 of the ONNX file, input and
                                preprocessing spec, output names, labels and the
                                product category of each label
    <model_dir>/model.onnx      the graph (dynamic batch axis)

``ModelManifest.load`` validates every field and, by default, the file's SHA-256,
so a worker never serves a model other than the one its manifest describes.
Standard library only: the export script writes manifests from its own environment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from inference.serving.errors import ModelError

__all__ = [
    "DEFAULT_MODEL",
    "FORMAT_VERSION",
    "IMAGENET_MODEL",
    "MANIFEST_FILE",
    "ModelManifest",
    "QuantizedGraph",
    "default_model_dir",
    "sha256_file",
]

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
#: The product model trained on the Grocery Store data; ``efficientnet-lite0`` is the
#: ImageNet generalist it was fine-tuned from (both ship in ``models/``).
DEFAULT_MODEL = "grocery-store"
IMAGENET_MODEL = "efficientnet-lite0"

Layout = Literal["NHWC", "NCHW"]
InputDType = Literal["uint8", "float32"]
ColourOrder = Literal["RGB", "BGR"]
Interpolation = Literal["area", "linear", "cubic"]


def default_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """Return the directory of a model shipped with the package (default: the product model)."""
    return Path(__file__).resolve().parent / "models" / name


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in chunks (model files, weights, training images)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class QuantizedGraph:
    """An INT8 copy of the graph for the CPU provider, and the evidence it was kept on.

    ``details`` records how it was made (calibration method and images, quantised
    operators) and what it scored against the FP32 graph on validation images;
    ``vitrine quantize`` writes it only when the top-1 loss is within its limit.
    """

    path: Path
    sha256: str
    details: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``int8`` section."""
        return {"file": self.path.name, "sha256": self.sha256, **self.details}


@dataclass(frozen=True)
class ModelManifest:
    """A model's identity, input contract, preprocessing, outputs and labels.

    ``mean``/``std`` are per channel in the manifest's colour order and apply to
    0-255 pixel values: the network sees ``(pixel - mean) / std``. When
    ``normalisation_in_graph`` is true the ONNX graph does that itself (and the
    layout change), and the CPU hands over uint8 crops.
    """

    name: str
    version: str
    sha256: str
    path: Path
    labels: tuple[str, ...]
    categories: tuple[str, ...]
    input_name: str = "image"
    input_layout: Layout = "NHWC"
    input_dtype: InputDType = "uint8"
    input_height: int = 224
    input_width: int = 224
    colour_order: ColourOrder = "RGB"
    resize_short_side: int = 256
    interpolation: Interpolation = "linear"
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    normalisation_in_graph: bool = True
    probabilities_output: str = "probabilities"
    embedding_output: str | None = "embedding"
    embedding_size: int | None = None
    #: Output scoring how familiar an image is (higher: more like the training data).
    ood_output: str | None = None
    #: Review thresholds (settings may override them; the rule: inference.serving.review):
    #: below ``kind_threshold`` (top kind's summed probability) -> ``uncertain_kind``,
    #: below ``ood_threshold`` (``ood_output``) -> ``unknown_product``, both routing;
    #: below ``product_threshold`` (top-1 probability) -> ``uncertain_product``, routing
    #: nothing; below ``confidence_threshold`` (top-1 probability, manifests written
    #: before kinds were) -> ``low_confidence``, routing.
    confidence_threshold: float | None = None
    ood_threshold: float | None = None
    kind_threshold: float | None = None
    product_threshold: float | None = None
    #: The kind of each label (``coarse`` in the JSON); empty when the model has none.
    coarse: tuple[str, ...] = ()
    fp16_path: Path | None = None
    #: INT8 graph served on CPUs when present (``VITRINE_PRECISION`` picks).
    int8: QuantizedGraph | None = None
    #: Visual search: the fitted projection of the embedding to a compact descriptor
    #: (``embedding_projection.npz``, read by :mod:`inference.serving.search`) and its sha256.
    projection_path: Path | None = None
    projection_sha256: str | None = None
    description: str = ""
    license: str = ""
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ------------------------------------------------------------------ helpers
    @property
    def model_dir(self) -> Path:
        """The directory holding the manifest and the ONNX file."""
        return self.path.parent

    @property
    def input_size(self) -> tuple[int, int]:
        """Network input (height, width)."""
        return (self.input_height, self.input_width)

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return len(self.labels)

    def verify_checksum(self) -> None:
        """Raise ``model.checksum_mismatch`` unless each ONNX file's SHA-256 is the declared one."""
        graphs = [(self.path, self.sha256)]
        if self.int8 is not None:
            graphs.append((self.int8.path, self.int8.sha256))
        for path, declared in graphs:
            actual = sha256_file(path)
            if actual != declared:
                raise ModelError(
                    "model.checksum_mismatch",
                    f"{path} has sha256 {actual}, but {self.model_dir / MANIFEST_FILE} "
                    f"declares {declared}; re-export the model or fix the manifest",
                )

    # --------------------------------------------------------------- load/save
    @classmethod
    def load(cls, model_dir: Path, *, verify_checksum: bool = True) -> ModelManifest:
        """Load and validate ``<model_dir>/manifest.json``.

        ``model_dir`` may also name the manifest file itself or the ONNX file
        next to it (``VITRINE_MODEL_PATH`` accepts all three).
        """
        model_dir = Path(model_dir)
        if model_dir.is_file():
            model_dir = model_dir.parent
        manifest_path = model_dir / MANIFEST_FILE
        try:
            raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(
                "model.not_found",
                f"no {MANIFEST_FILE} in {model_dir} (VITRINE_MODEL_PATH names a model directory)",
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(
                "model.invalid_manifest", f"cannot read {manifest_path}: {exc}"
            ) from exc
        manifest = cls.from_dict(raw, model_dir=model_dir)
        graphs = [manifest.path] + ([manifest.int8.path] if manifest.int8 else [])
        for graph in graphs:
            if not graph.is_file():
                raise ModelError(
                    "model.not_found",
                    f"{manifest_path} names {graph.name}, which is not in {model_dir}",
                )
        if verify_checksum:
            manifest.verify_checksum()
        return manifest

    @classmethod
    def from_dict(cls, raw: object, *, model_dir: Path) -> ModelManifest:
        """Build a manifest from its JSON form; raise ``model.invalid_manifest`` on any problem."""
        where = model_dir / MANIFEST_FILE
        try:
            # The optional sections after the core ones (_parse is long enough).
            return _parse(raw, model_dir).replace(**_search(cast(dict[str, Any], raw), model_dir))
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ModelError("model.invalid_manifest", f"{where}: {detail}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest's JSON form (paths relative to the model directory)."""
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "license": self.license,
            "file": self.path.name,
            "sha256": self.sha256,
            "fp16_file": self.fp16_path.name if self.fp16_path else None,
            "int8": self.int8.to_dict() if self.int8 else None,
            "input": {
                "name": self.input_name,
                "layout": self.input_layout,
                "dtype": self.input_dtype,
                "height": self.input_height,
                "width": self.input_width,
                "colour_order": self.colour_order,
            },
            "preprocessing": {
                "resize_short_side": self.resize_short_side,
                "crop": "center",
                "interpolation": self.interpolation,
                "mean": list(self.mean),
                "std": list(self.std),
                "normalisation_in_graph": self.normalisation_in_graph,
            },
            "outputs": {
                "probabilities": self.probabilities_output,
                "embedding": self.embedding_output,
                "embedding_size": self.embedding_size,
                "ood_score": self.ood_output,
            },
            "review": self._review_dict(),
            **self._search_dict(),
            "source": dict(self.source),
            "labels": list(self.labels),
            "categories": list(self.categories),
            **({"coarse": list(self.coarse)} if self.coarse else {}),
        }

    def _review_dict(self) -> dict[str, float | None]:
        # The kind-level fields only when set: manifests without them are written as before.
        review = {
            "confidence_threshold": self.confidence_threshold,
            "ood_threshold": self.ood_threshold,
        }
        for key in _KIND_LEVEL_THRESHOLDS:
            if getattr(self, key) is not None:
                review[key] = getattr(self, key)
        return review

    def _search_dict(self) -> dict[str, Any]:
        # Only when there is a projection: manifests without one are written as before.
        if self.projection_path is None:
            return {}
        return {
            "search": {
                "projection_file": self.projection_path.name,
                "projection_sha256": self.projection_sha256,
            }
        }

    def write(self) -> Path:
        """Write ``manifest.json`` into the model directory and return its path."""
        path = self.model_dir / MANIFEST_FILE
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        path.write_text(text + "\n", encoding="utf-8")
        return path

    def replace(self, **changes: Any) -> ModelManifest:
        """Return a copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} must be a non-empty string, not {value!r}")
    return value


def _int(obj: Mapping[str, Any], key: str, *, minimum: int = 1) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key!r} must be an integer >= {minimum}, not {value!r}")
    return value


def _choice(obj: Mapping[str, Any], key: str, allowed: Sequence[str]) -> str:
    value = obj[key]
    if value not in allowed:
        raise ValueError(f"{key!r} must be one of {', '.join(allowed)}, not {value!r}")
    return cast(str, value)


def _triple(obj: Mapping[str, Any], key: str, *, positive: bool) -> tuple[float, float, float]:
    value = obj[key]
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) and (v > 0 or not positive) for v in value)
    ):
        raise ValueError(f"{key!r} must be 3 finite numbers{' > 0' if positive else ''}")
    return (float(value[0]), float(value[1]), float(value[2]))


def _optional_number(obj: Mapping[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{key!r} must be a finite number or null, not {value!r}")
    return float(value)


def _strings(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key!r} must be a non-empty list of strings")
    return tuple(value)


def _file_in(model_dir: Path, name: object, key: str) -> Path:
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ValueError(f"{key!r} must be a file name inside the model directory, not {name!r}")
    return model_dir / name


def _sha256_field(obj: Mapping[str, Any], key: str) -> str:
    sha = _str(obj, key).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"{key!r} must be 64 hex digits, not {sha!r}")
    return sha


def _quantized(raw: Mapping[str, Any], model_dir: Path) -> QuantizedGraph | None:
    section = raw.get("int8")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise TypeError("'int8' must be a JSON object or null")
    details = {k: v for k, v in section.items() if k not in ("file", "sha256")}
    return QuantizedGraph(
        path=_file_in(model_dir, section.get("file"), "int8.file"),
        sha256=_sha256_field(section, "sha256"),
        details=details,
    )


#: Review fields added with the kind-level rule; a manifest may lack them.
_KIND_LEVEL_THRESHOLDS = ("kind_threshold", "product_threshold")


def _thresholds(review: Mapping[str, Any]) -> dict[str, Any]:
    # dict[str, Any]: unpacked into ModelManifest beside fields of other types.
    keys = ("confidence_threshold", "ood_threshold", *_KIND_LEVEL_THRESHOLDS)
    return {k: _optional_number(review, k) for k in keys}


def _coarse(raw: Mapping[str, Any], n_labels: int) -> tuple[str, ...]:
    """The optional ``coarse`` list: one kind per label."""
    if raw.get("coarse") is None:
        return ()
    coarse = _strings(raw, "coarse")
    if len(coarse) != n_labels:
        raise ValueError(f"{n_labels} labels but {len(coarse)} coarse kinds")
    return coarse


def _search(raw: Mapping[str, Any], model_dir: Path) -> dict[str, Any]:
    """The optional ``search`` section: the projection file and its sha256."""
    search = raw.get("search")
    if search is None:
        return {}
    if not isinstance(search, dict):
        raise TypeError("'search' must be a JSON object")
    sha = _sha256_field(search, "projection_sha256")
    path = _file_in(model_dir, search["projection_file"], "projection_file")
    return {"projection_path": path, "projection_sha256": sha}


def _parse(raw: object, model_dir: Path) -> ModelManifest:
    if not isinstance(raw, dict):
        raise TypeError("the manifest must be a JSON object")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"format_version is {raw.get('format_version')!r}; this code reads {FORMAT_VERSION}"
        )
    inp, pre, out = raw["input"], raw["preprocessing"], raw["outputs"]
    if not all(isinstance(section, dict) for section in (inp, pre, out)):
        raise TypeError("'input', 'preprocessing' and 'outputs' must be JSON objects")
    sha = _sha256_field(raw, "sha256")
    labels = _strings(raw, "labels")
    categories = _strings(raw, "categories")
    if len(categories) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(categories)} categories")
    if pre.get("crop", "center") != "center":
        raise ValueError(f"'crop' must be 'center', not {pre.get('crop')!r}")
    embedding_output = out.get("embedding")
    if embedding_output is not None and not isinstance(embedding_output, str):
        raise ValueError("'outputs.embedding' must be a string or null")
    embedding_size = out.get("embedding_size")
    if embedding_size is not None:
        embedding_size = _int(out, "embedding_size")
    ood_output = out.get("ood_score")
    if ood_output is not None and not isinstance(ood_output, str):
        raise ValueError("'outputs.ood_score' must be a string or null")
    review = raw.get("review") or {}
    if not isinstance(review, dict):
        raise TypeError("'review' must be a JSON object")
    thresholds = _thresholds(review)
    fp16_file = raw.get("fp16_file")
    source = raw.get("source", {})
    if not isinstance(source, dict):
        raise TypeError("'source' must be a JSON object")
    height, width = _int(inp, "height"), _int(inp, "width")
    short_side = _int(pre, "resize_short_side")
    if short_side < max(height, width):
        raise ValueError(
            f"resize_short_side={short_side} is smaller than the {height}x{width} crop"
        )
    dtype = _choice(inp, "dtype", ("uint8", "float32"))
    mean, std = _triple(pre, "mean", positive=False), _triple(pre, "std", positive=True)
    in_graph = pre["normalisation_in_graph"]
    if not isinstance(in_graph, bool):
        raise ValueError("'normalisation_in_graph' must be true or false")
    if dtype == "uint8" and not in_graph and (mean, std) != ((0.0,) * 3, (1.0,) * 3):
        raise ValueError("a uint8 input cannot carry normalised values; set normalisation_in_graph")
    return ModelManifest(
        name=_str(raw, "name"),
        version=_str(raw, "version"),
        sha256=sha,
        path=_file_in(model_dir, raw["file"], "file"),
        labels=labels,
        categories=categories,
        coarse=_coarse(raw, len(labels)),
        input_name=_str(inp, "name"),
        input_layout=cast(Layout, _choice(inp, "layout", ("NHWC", "NCHW"))),
        input_dtype=cast(InputDType, dtype),
        input_height=height,
        input_width=width,
        colour_order=cast(ColourOrder, _choice(inp, "colour_order", ("RGB", "BGR"))),
        resize_short_side=short_side,
        interpolation=cast(
            Interpolation, _choice(pre, "interpolation", ("area", "linear", "cubic"))
        ),
        mean=mean,
        std=std,
        normalisation_in_graph=in_graph,
        probabilities_output=_str(out, "probabilities"),
        embedding_output=embedding_output,
        embedding_size=embedding_size,
        ood_output=ood_output,
        **thresholds,
        fp16_path=_file_in(model_dir, fp16_file, "fp16_file") if fp16_file is not None else None,
        int8=_quantized(raw, model_dir),
        description=str(raw.get("description", "")),
        license=str(raw.get("license", "")),
        source=source,
    )
