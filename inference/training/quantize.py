"""INT8 serving graphs: static post-training quantisation, kept only where accuracy holds.

``quantize_model`` turns a model directory's FP32 graph into an INT8 copy with ONNX
Runtime's static quantisation (QDQ, per-channel INT8 weights, UINT8 activations,
calibrated on training images) and records it in the manifest, where the engine
serves it on the CPU provider (``VITRINE_PRECISION=auto``). Only the convolutions,
their clips and the residual adds are quantised; the stem and block 0 stay FP32,
where most of the quantisation noise entered. The graph is written only when its
validation top-1 through the serving engine is at most ``max_top1_drop`` below
FP32's; otherwise the report says by how much it missed and nothing changes.
Choices and measurements: docs/PERFORMANCE.md ("INT8 on the CPU").
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from inference.serving.decode import LOCAL_FILE_LIMITS, decode_image
from inference.serving.engine import Engine
from inference.serving.manifest import MANIFEST_FILE, ModelManifest, QuantizedGraph, sha256_file
from inference.serving.options import CPU_ONLY, EngineOptions
from inference.training.dataset import Dataset, Sample, data_hash
from inference.training.evaluate import measure_throughput, predict_all

__all__ = ["INT8_FILE", "QuantizeConfig", "QuantizeReport", "quantize_model"]

logger = logging.getLogger(__name__)

INT8_FILE = "model.int8.onnx"
Method = Literal["entropy", "percentile", "minmax"]
#: Operators quantised; everything else (normalisation, head, softmax, OOD) stays FP32.
QUANTISED_OPS = ("Conv", "Clip", "Add")


@dataclass(frozen=True)
class QuantizeConfig:
    """How to calibrate, and how much top-1 accuracy the INT8 graph may give up."""

    calibration_images: int = 256
    method: Method = "entropy"
    percentile: float = 99.999
    max_top1_drop: float = 0.005  # 0.5 point
    batch_size: int = 16
    seed: int = 0
    #: Calibration draws (seeds ``seed``, ``seed + 1``, ...); the best on validation is kept.
    tries: int = 3
    #: The first convolutions (graph order) left in FP32: the stem and block 0 of
    #: EfficientNet-Lite, where most of the quantisation noise enters (see the module doc).
    fp32_leading_convs: int = 3
    throughput_images: int = 256


@dataclass
class QuantizeReport:
    """What the INT8 graph scored against FP32, and whether it was kept."""

    model_dir: str
    config: QuantizeConfig
    val_images: int
    top1_fp32: float
    top1_int8: float
    agreement: float  # share of validation images with the same top-1 label
    embedding_cosine_p5: float  # 5th percentile of cos(fp32, int8) embedding
    fp32_images_per_s: float  # model alone, same images, taking turns
    int8_images_per_s: float
    kernels: dict[str, int] = field(default_factory=dict)  # op types after ORT's fusion
    seed: int = 0  # the calibration draw kept
    #: Every draw's seed, validation top-1 and agreement with FP32.
    tries: list[dict[str, float]] = field(default_factory=list)
    kept: bool = False

    @property
    def top1_drop(self) -> float:
        """FP32 top-1 minus INT8 top-1 (positive: INT8 is worse)."""
        return self.top1_fp32 - self.top1_int8

    @property
    def speedup(self) -> float:
        """INT8 model images/s over FP32's."""
        return self.int8_images_per_s / self.fp32_images_per_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            **{k: v for k, v in asdict(self).items() if k != "config"},
            "config": asdict(self.config),
            "top1_drop": self.top1_drop,
            "speedup": self.speedup,
        }


def _stratified(samples: Sequence[Sample], n: int, seed: int) -> list[Sample]:
    """``n`` samples taking classes in turn (each class shuffled), so all are represented."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample.label, []).append(sample)
    queues = [list(rng.permutation(np.array(v, dtype=object))) for _, v in sorted(by_class.items())]
    chosen: list[Sample] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return chosen


def calibration_tensors(
    manifest: ModelManifest, samples: Sequence[Sample]
) -> npt.NDArray[np.generic]:
    """The model's input tensors for ``samples``, made by the serving decode and preprocessing."""
    from inference.serving.preprocess import Preprocessor  # noqa: PLC0415

    preprocessor = Preprocessor.from_manifest(manifest)
    pixels = [
        decode_image(s.path.read_bytes(), LOCAL_FILE_LIMITS, min_side=manifest.resize_short_side)
        for s in samples
    ]
    return preprocessor.batch([image.pixels for image in pixels])


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a tensor, a batch at a time.

    ``set_range`` (with ``__len__``) lets ``quantize_static`` feed the calibrator a
    few batches per ``collect_data`` call (``CalibStridedMinMax``): the histogram
    calibrators hold every intermediate output of what one call reads, about
    60 MB per image for this network, so 256 images read at once needed 16 GB.
    """

    def __init__(self, name: str, tensors: npt.NDArray[np.generic], batch_size: int) -> None:
        starts = range(0, len(tensors), batch_size)
        self._all = [{name: tensors[i : i + batch_size]} for i in starts]
        self._batches: Iterator[dict[str, npt.NDArray[np.generic]]] = iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._batches = iter(self._all[start_index:end_index])

    def get_next(self) -> dict[str, npt.NDArray[np.generic]] | None:
        return next(self._batches, None)


def quantize_graph(
    src: Path, dst: Path, input_name: str, tensors: npt.NDArray[np.generic], config: QuantizeConfig
) -> None:
    """Write a static QDQ INT8 copy of ``src`` to ``dst``, calibrated on ``tensors``."""
    from onnxruntime.quantization import (  # noqa: PLC0415
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    methods = {
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "minmax": CalibrationMethod.MinMax,
    }
    with tempfile.TemporaryDirectory(prefix="vitrine-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
        quantize_static(
            str(prepared),
            str(dst),
            _Reader(input_name, tensors, config.batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[config.method],
            op_types_to_quantize=list(QUANTISED_OPS),
            nodes_to_exclude=convs[: config.fp32_leading_convs],
            calibration_providers=["CPUExecutionProvider"],
            extra_options={
                # Histograms are updated every batch instead of from every
                # intermediate output at once (see _Reader).
                "CalibStridedMinMax": 1,
                "CalibPercentile": config.percentile,
            },
        )


def fused_kernels(path: Path) -> dict[str, int]:
    """Operator counts of ``path`` after ONNX Runtime's CPU graph optimisations."""
    with tempfile.TemporaryDirectory(prefix="vitrine-kernels-") as tmp:
        optimised = Path(tmp) / "optimised.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(optimised)
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        counts: dict[str, int] = {}
        for node in onnx.load(str(optimised)).graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _labels_of(manifest: ModelManifest, dataset: Dataset) -> list[int]:
    index = {label: i for i, label in enumerate(manifest.labels)}
    missing = [c for c in dataset.classes if c not in index]
    if missing:
        raise ValueError(
            f"{len(missing)} class(es) of {dataset.root} are not labels of the model: "
            f"{', '.join(missing[:5])}"
        )
    return [index[c] for c in dataset.classes]


def _outputs(engine: Engine, dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities, true labels and embeddings of the validation images."""
    probs, y_true, _ood, failed, embeddings = predict_all(
        engine,
        dataset,
        _labels_of(engine.manifest, dataset),
        None,
        32,
        progress=False,
        with_embeddings=True,
    )
    if failed:
        raise ValueError(f"{len(failed)} validation image(s) could not be read: {failed[:3]}")
    assert embeddings is not None
    return probs, y_true, embeddings


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(
        (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    )


def _score(
    manifest: ModelManifest,
    candidates: Sequence[tuple[int, Path]],
    val: Dataset,
    config: QuantizeConfig,
    options: EngineOptions,
) -> QuantizeReport:
    """Score each candidate INT8 graph against FP32 on ``val`` with the serving engine.

    The candidate with the best top-1 (then agreement with FP32) is the one
    reported, timed against FP32 and kept if it is within the limit.
    """
    # The INT8 graph is for CPUs: both graphs run there, with the worker's threads.
    cpu = replace(options, providers=("cpu",), max_batch_size=32)
    with Engine.build(manifest, cpu.with_precision("fp32")) as fp32:
        p32, y_true, e32 = _outputs(fp32, val)
        scored = []
        for seed, path in candidates:
            candidate = manifest.replace(int8=QuantizedGraph(path, sha256_file(path)))
            with Engine.build(candidate, cpu.with_precision("int8")) as q:
                p8, _, e8 = _outputs(q, val)
            top1 = float((p8.argmax(1) == y_true).mean())
            agreement = float((p32.argmax(1) == p8.argmax(1)).mean())
            cosine = float(np.percentile(_cosines(e32, e8), 5))
            scored.append((top1, agreement, seed, path, cosine))
            logger.info("calibration draw %d: top-1 %.4f, agreement %.4f", seed, top1, agreement)
        top1, agreement, seed, path, cosine = max(scored, key=lambda t: (t[0], t[1]))
        best = manifest.replace(int8=QuantizedGraph(path, sha256_file(path)))
        blobs = [s.path.read_bytes() for s in val.samples[: config.throughput_images]]
        with Engine.build(best, cpu.with_precision("int8")) as int8:
            speed = measure_throughput([fp32, int8], blobs, config.throughput_images, 32)
    return QuantizeReport(
        model_dir=str(manifest.model_dir),
        config=config,
        val_images=len(y_true),
        top1_fp32=float((p32.argmax(1) == y_true).mean()),
        top1_int8=top1,
        agreement=agreement,
        embedding_cosine_p5=cosine,
        fp32_images_per_s=speed[0].model_images_per_s,
        int8_images_per_s=speed[1].model_images_per_s,
        kernels=fused_kernels(path),
        seed=seed,
        tries=[{"seed": t[2], "top1_int8": t[0], "agreement": t[1]} for t in scored],
    )


def _record(manifest: ModelManifest, report: QuantizeReport, train: Dataset) -> None:
    """Add the ``int8`` section to the manifest file, keeping every other field as written."""
    path = manifest.model_dir / MANIFEST_FILE
    raw = json.loads(path.read_text(encoding="utf-8"))
    graph = manifest.model_dir / INT8_FILE
    raw["int8"] = QuantizedGraph(
        path=graph,
        sha256=sha256_file(graph),
        details={
            "format": "QDQ",
            "weights": "int8, per channel",
            "activations": "uint8",
            "quantised_ops": list(QUANTISED_OPS),
            "fp32_leading_convs": report.config.fp32_leading_convs,
            "calibration": {
                "method": report.config.method,
                "images": report.config.calibration_images,
                "data_hash": data_hash(train, [sha256_file(s.path) for s in train.samples]),
                "sampling": "class-stratified",
                "seed": report.seed,
                "draws": report.tries,
            },
            "validation": {
                "images": report.val_images,
                "top1_fp32": report.top1_fp32,
                "top1_int8": report.top1_int8,
                "top1_agreement": report.agreement,
                "max_top1_drop": report.config.max_top1_drop,
            },
            "quantized_by": f"vitrine quantize (onnxruntime {ort.__version__})",
        },
    ).to_dict()
    path.write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def quantize_model(
    model_dir: Path,
    train: Dataset,
    val: Dataset,
    config: QuantizeConfig | None = None,
    options: EngineOptions = CPU_ONLY,
) -> QuantizeReport:
    """Quantise ``model_dir``'s graph; keep it (file + manifest) only if top-1 on ``val`` holds.

    Both graphs are scored on CPUs with ``options``' threads (the worker's).
    ``config.tries`` calibration draws are made (class-stratified samples of
    ``train`` with successive seeds); the best on ``val`` is the candidate.
    """
    config = config or QuantizeConfig()
    manifest = ModelManifest.load(model_dir).replace(int8=None)
    with tempfile.TemporaryDirectory(prefix="vitrine-int8-") as tmp:
        candidates = []
        for seed in range(config.seed, config.seed + max(1, config.tries)):
            samples = _stratified(train.samples, config.calibration_images, seed)
            logger.info(
                "calibration draw %d: %d training images (%s)", seed, len(samples), config.method
            )
            staged = Path(tmp) / f"int8-{seed}.onnx"
            tensors = calibration_tensors(manifest, samples)
            quantize_graph(manifest.path, staged, manifest.input_name, tensors, config)
            candidates.append((seed, staged))
        report = _score(manifest, candidates, val, config, options)
        report.kept = report.top1_drop <= config.max_top1_drop + 1e-9
        if report.kept:
            shutil.copyfile(dict(candidates)[report.seed], manifest.model_dir / INT8_FILE)
            _record(manifest, report, train)
    return report
