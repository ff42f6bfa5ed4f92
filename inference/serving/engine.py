"""The inference engine: image bytes in, labelled predictions out, a batch at a time.

``Engine`` owns one ONNX Runtime session built from a :class:`ModelManifest`. It
takes N images and returns N results in input order; an unusable image comes back
as an :class:`InferenceError` in its position and never sinks the batch. Providers
are tried in order (TensorRT -> CUDA -> CPU), each GPU one only if
:mod:`inference.serving.providers` finds it can run here. On CUDA it uses IOBinding
and, if its answers match FP32, an FP16 graph; on CPU the FP32 or INT8 graph, with
a batch split into ``cpu_streams`` single-threaded sub-batches run at once, which
uses the cores better than intra-op threads for a network this small.
:func:`predict_with_fingerprints` is the worker's model stage. Figures: docs/PERFORMANCE.md.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from inference.samples import sample_images
from inference.serving.decode import LOCAL_FILE_LIMITS, DecodedImage, ImageLimits, decode_image
from inference.serving.defaults import DEFAULT_MAX_BATCH_SIZE
from inference.serving.errors import ImageError, InferenceError, InferenceRunError, ModelError
from inference.serving.fingerprint import Fingerprint, fingerprint
from inference.serving.manifest import ModelManifest
from inference.serving.options import EngineOptions
from inference.serving.preprocess import BLUR_THRESHOLD, Preprocessor, sharpness
from inference.serving.providers import (
    ProviderOptions,
    available_cpus,
    describe_device,
    select_providers,
    session_options,
    short_name,
)
from inference.serving.review import (
    INFORMATIONAL_FLAGS,
    REVIEW_FLAGS,
    LevelScores,
    ReviewThresholds,
    group_matrix,
    level_scores,
    review_flags,
    review_masks,
)

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "INFORMATIONAL_FLAGS",
    "REVIEW_FLAGS",
    "BatchResult",
    "Engine",
    "ModelOutputs",
    "Prediction",
    "StageTimings",
    "predict_with_fingerprints",
]

logger = logging.getLogger(__name__)


# FP16 is used only when it changes no top-1 class and no probability by more than this.
_FP16_MAX_ABS_DIFF = 2e-2


@dataclass(frozen=True, eq=False)
class Prediction:
    """What the model says about one image."""

    labels: tuple[tuple[str, float], ...]  # top-k (label, probability), best first
    category: str  # product category with the largest summed probability
    score: float  # that category's summed probability
    model_name: str
    model_version: str
    flags: tuple[str, ...] = ()  # quality flags (decoding, preprocessing) and review flags
    embedding: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    #: How familiar the image looks to the model (higher: more); None without an OOD output.
    ood_score: float | None = None
    kind: str = ""  # the kind (manifest ``coarse``) with the largest summed probability
    kind_score: float = 0.0  # that kind's summed probability

    @property
    def label(self) -> str:
        """The top-1 label."""
        return self.labels[0][0]


@dataclass(frozen=True)
class ModelOutputs:
    """One batch's outputs: probabilities, embeddings and OOD scores (where the graph has them)."""

    probabilities: npt.NDArray[np.float32]
    embedding: npt.NDArray[np.float32] | None = None
    ood: npt.NDArray[np.float32] | None = None


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


@dataclass(frozen=True)
class StageTimings:
    """Wall-clock seconds spent on the whole batch in each stage."""

    decode_s: float = 0.0
    preprocess_s: float = 0.0
    inference_s: float = 0.0

    @property
    def total_s(self) -> float:
        """Sum of the stages."""
        return self.decode_s + self.preprocess_s + self.inference_s


@dataclass(frozen=True, eq=False)
class BatchResult:
    """One result per input, in input order, and the batch's stage timings."""

    items: list[Prediction | InferenceError]
    timings: StageTimings

    @property
    def ok(self) -> list[Prediction]:
        """The successful predictions (positions are lost; use ``items`` to keep them)."""
        return [item for item in self.items if isinstance(item, Prediction)]

    @property
    def errors(self) -> list[tuple[int, InferenceError]]:
        """(position, error) of every failed item."""
        return [(i, item) for i, item in enumerate(self.items) if isinstance(item, InferenceError)]


# --------------------------------------------------------------------------- engine


class Engine:
    """An ONNX Runtime session for one model, with decode and preprocessing around it.

    ``predict_bytes`` may be called from one executor thread at a time (calls are
    also serialised by a lock, so sharing an engine between threads is safe but
    gains nothing; use one engine per worker thread instead).
    """

    @classmethod
    def build(
        cls, manifest: ModelManifest, options: EngineOptions, *, warmup: bool = True
    ) -> Engine:
        """The engine ``options`` describe for ``manifest``: how the worker and tools build one."""
        t = options.thresholds
        return cls(
            manifest,
            providers=options.providers,
            intra_op_threads=options.intra_op_threads,
            inter_op_threads=options.inter_op_threads,
            device_id=options.device_id,
            fp16=options.fp16,
            top_k=options.top_k,
            warmup=warmup,
            max_batch_size=options.max_batch_size,
            cache_dir=options.cache_dir,
            cpu_streams=options.cpu_streams,
            confidence_threshold=t.confidence_threshold,
            ood_threshold=t.ood_threshold,
            precision=options.precision,
            kind_threshold=t.kind_threshold,
            product_threshold=t.product_threshold,
        )

    def __init__(
        self,
        manifest: ModelManifest,
        *,
        providers: Sequence[str] = ("tensorrt", "cuda", "cpu"),
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        device_id: int = 0,
        fp16: bool = True,
        top_k: int = 5,
        warmup: bool = True,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        cache_dir: Path | None = None,
        cpu_streams: int | None = None,
        confidence_threshold: float | None = None,
        ood_threshold: float | None = None,
        precision: str = "auto",
        kind_threshold: float | None = None,
        product_threshold: float | None = None,
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if cpu_streams is not None and cpu_streams < 1:
            raise ValueError(f"cpu_streams must be >= 1, got {cpu_streams}")
        self.manifest = manifest
        self.model_name = manifest.name
        self.model_version = manifest.version
        self.top_k = min(top_k, manifest.num_classes)
        self.max_batch_size = max_batch_size
        # Review thresholds: the caller's (settings), else the ones trained with the model.
        self.confidence_threshold = _first(confidence_threshold, manifest.confidence_threshold)
        self.ood_threshold = _first(ood_threshold, manifest.ood_threshold)
        self.kind_threshold = _first(kind_threshold, manifest.kind_threshold)
        self.product_threshold = _first(product_threshold, manifest.product_threshold)
        self.preprocessor = Preprocessor.from_manifest(manifest)
        self._lock = threading.Lock()
        self._categories, self._category_matrix = group_matrix(manifest.categories)
        # A model without kinds: each label is its own kind.
        self._kinds, self._kind_matrix = group_matrix(manifest.coarse or manifest.labels)
        self._provider_options = ProviderOptions(
            input_name=manifest.input_name,
            image_shape=self._image_shape,
            device_id=device_id,
            max_batch_size=max_batch_size,
            fp16=fp16,
            cache_dir=cache_dir,
        )
        usable, self.probes = select_providers(providers, device_id=device_id)
        self._graph, self.precision = self._choose_graph(usable[0], precision)
        self._session, self.provider = self._create_session(
            usable, intra_op_threads, inter_op_threads, self._graph
        )
        self.fp16 = False
        self.device = describe_device(self.provider, self.probes, device_id=device_id)
        if fp16 and self.provider == "cuda":
            self._try_fp16(usable, intra_op_threads, inter_op_threads)
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.cpu_streams = 1
        self._stream_session: ort.InferenceSession | None = None
        self._pool: ThreadPoolExecutor | None = None
        if self.provider == "cpu":
            self._start_streams(cpu_streams, intra_op_threads, inter_op_threads)
        self._check_io()
        if warmup:
            self.warmup()
        logger.info(
            "inference engine ready: model=%s %s provider=%s device=%r precision=%s "
            "input=%s batch=1..%d threads=intra:%s inter:%s streams=%d",
            self.model_name, self.model_version, self.provider, self.device, self.precision,
            self.input_shape, self.max_batch_size, intra_op_threads or "auto",
            inter_op_threads, self.cpu_streams,
        )  # fmt: skip

    def _choose_graph(self, provider: str, precision: str) -> tuple[str, str]:
        """The graph to load and its precision: INT8 on the CPU where the model has one.

        ``auto`` takes the manifest's INT8 graph on the CPU provider (it was kept only
        if its top-1 accuracy held, see ``vitrine quantize``); ``fp32`` never does;
        ``int8`` insists, and fails when the model has none. GPU providers run FP32
        (and FP16 where it checks out): ONNX Runtime's INT8 kernels are CPU kernels.
        """
        if precision not in ("auto", "fp32", "int8"):
            raise ValueError(f"precision must be auto, fp32 or int8, not {precision!r}")
        int8 = self.manifest.int8
        if precision == "int8" and int8 is None:
            raise ModelError(
                "model.no_int8",
                f"{self.manifest.model_dir} has no INT8 graph; make one with `vitrine quantize`",
            )
        if provider != "cpu":
            if precision == "int8":
                logger.warning("INT8 graphs run on the CPU provider; %s runs FP32", provider)
            return str(self.manifest.path), "fp32"
        if int8 is not None and precision != "fp32":
            return str(int8.path), "int8"
        return str(self.manifest.path), "fp32"

    def _start_streams(self, streams: int | None, intra: int, inter: int) -> None:
        """Prepare data-parallel CPU inference: sub-batches on single-threaded runs at once.

        For a small CNN on a few cores, one image per core in parallel keeps every core
        busier than splitting each operator across cores (measured here: about 65
        images per CPU-second single-threaded against 55 with two intra-op threads).
        Batches smaller than two images still run on the multi-threaded session.
        Automatic (``None``) only when the thread count is automatic too.
        """
        if streams is None:
            streams = available_cpus() if intra == 0 else 1
        streams = min(streams, self.max_batch_size)
        if streams < 2:
            return
        self._stream_session, _ = self._create_session(["cpu"], 1, inter, self._graph)
        self._pool = ThreadPoolExecutor(max_workers=streams - 1, thread_name_prefix="vitrine-infer")
        self.cpu_streams = streams

    def close(self) -> None:
        """Stop the CPU stream threads (the engine must not be used afterwards)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            self._stream_session = None
            self.cpu_streams = 1

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- session
    def _create_session(
        self,
        usable: Sequence[str],
        intra: int,
        inter: int,
        model: str | bytes,
    ) -> tuple[ort.InferenceSession, str]:
        try:
            session = ort.InferenceSession(
                model,
                sess_options=session_options(intra, inter),
                providers=self._provider_options.session_providers(usable),
            )
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            where = model if isinstance(model, str) else self.manifest.path
            raise ModelError("model.load_failed", f"cannot load {where}: {exc}") from exc
        active = session.get_providers()
        provider = short_name(active[0]) if active else "cpu"
        if usable and provider != usable[0]:
            logger.warning("asked for %s, onnxruntime chose %s", usable[0], provider)
        return session, provider

    def _try_fp16(self, usable: Sequence[str], intra: int, inter: int) -> None:
        """Switch to an FP16 graph if it gives the same answers as FP32 on a check batch."""
        try:
            model: str | bytes
            if self.manifest.fp16_path is not None and self.manifest.fp16_path.is_file():
                model = str(self.manifest.fp16_path)
            else:
                model = _fp16_model_bytes(self.manifest.path)
            candidate, _ = self._create_session(usable, intra, inter, model)
            check = self._check_batch()
            names = [self.manifest.probabilities_output]
            reference = np.asarray(self._session.run(names, {self.manifest.input_name: check})[0])
            half = np.asarray(candidate.run(names, {self.manifest.input_name: check})[0])
            diff = float(np.abs(reference - half.astype(np.float32)).max())
            same_top1 = bool((reference.argmax(1) == half.argmax(1)).all())
        except Exception as exc:  # conversion or session problems: FP32 still works
            logger.warning("FP16 disabled: %s", exc)
            return
        if same_top1 and diff <= _FP16_MAX_ABS_DIFF:
            self._session, self.fp16, self.precision = candidate, True, "fp16"
        else:
            logger.warning(
                "FP16 disabled: max |fp16 - fp32| = %.4f (limit %.4f), same top-1: %s",
                diff,
                _FP16_MAX_ABS_DIFF,
                same_top1,
            )

    def _check_batch(self) -> npt.NDArray[np.generic]:
        """Real photos (the shipped samples) plus a flat and a noisy image."""
        images = [
            decode_image(
                path.read_bytes(), LOCAL_FILE_LIMITS, min_side=self.manifest.resize_short_side
            )
            for path in sample_images()[:: max(1, len(sample_images()) // 8)]
        ]
        crops = self.preprocessor.crops([image.pixels for image in images])
        rng = np.random.default_rng(0)
        extra = np.stack([np.full_like(crops[0], 127), rng.integers(0, 256, crops[0].shape)])
        return self.preprocessor.to_model_input(np.concatenate([crops, extra.astype(np.uint8)]))

    def _check_io(self) -> None:
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        m = self.manifest
        problems = []
        if m.input_name not in inputs:
            problems.append(f"no input {m.input_name!r} (graph has {sorted(inputs)})")
        for name in (m.probabilities_output, m.embedding_output, m.ood_output):
            if name is not None and name not in outputs:
                problems.append(f"no output {name!r} (graph has {sorted(outputs)})")
        if not problems:
            width = outputs[m.probabilities_output].shape[-1]
            if isinstance(width, int) and width != m.num_classes:
                problems.append(f"{width} output classes but {m.num_classes} labels")
        if problems:
            raise ModelError(
                "model.incompatible",
                f"{m.path} does not match {m.model_dir / 'manifest.json'}: " + "; ".join(problems),
            )

    @property
    def input_shape(self) -> tuple[str | int, ...]:
        """The graph's input shape as the manifest declares it ("N" for the batch axis)."""
        return ("N", *self._image_shape)

    @property
    def _image_shape(self) -> tuple[int, int, int]:
        m = self.manifest
        if m.input_layout == "NHWC":
            return (m.input_height, m.input_width, 3)
        return (3, m.input_height, m.input_width)

    def warmup(self, batch_size: int | None = None) -> None:
        """Run the graph so the first real batch does not pay for lazy initialisation.

        Always with one image (and one per CPU stream); with ``batch_size`` also
        with a batch that large, so that a server's first full batch does not grow
        the memory arenas (CPU) or build a TensorRT profile (GPU) while it waits.
        """
        n = max(self.cpu_streams, min(batch_size or 1, self.max_batch_size))
        crops = np.full(
            (n, self.manifest.input_height, self.manifest.input_width, 3), 127, np.uint8
        )
        tensor = self.preprocessor.to_model_input(crops)
        self.infer(tensor[:1], with_embedding=True)
        if self.cpu_streams > 1:
            self.infer(tensor[: self.cpu_streams], with_embedding=True)
        if n > self.cpu_streams:
            self.infer(tensor, with_embedding=True)

    def info(self) -> dict[str, Any]:
        """JSON-able facts for logs, metrics and ``vitrine bench``."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_sha256": self.manifest.sha256,
            "graph": Path(self._graph).name,
            "provider": self.provider,
            "device": self.device,
            "precision": self.precision,
            "input_shape": list(self.input_shape),
            "input_dtype": self.manifest.input_dtype,
            "max_batch_size": self.max_batch_size,
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "cpu_streams": self.cpu_streams,
            "onnxruntime": ort.__version__,
            "probes": [p.__dict__ for p in self.probes],
        }

    # ---------------------------------------------------------------- running
    def infer(
        self, tensor: npt.NDArray[np.generic], *, with_embedding: bool = False
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """Run the graph on a preprocessed batch; return probabilities and (maybe) embeddings.

        Raises whatever ONNX Runtime raises; ``predict_*`` turn that into per-item errors.
        """
        outputs = self.infer_outputs(tensor, with_embedding=with_embedding)
        return outputs.probabilities, outputs.embedding

    def infer_outputs(
        self, tensor: npt.NDArray[np.generic], *, with_embedding: bool = False
    ) -> ModelOutputs:
        """Every output the manifest names: probabilities, embedding (if asked), OOD score."""
        m = self.manifest
        names = [m.probabilities_output]
        if with_embedding and m.embedding_output is not None:
            names.append(m.embedding_output)
        if m.ood_output is not None:
            names.append(m.ood_output)
        with self._lock:
            if self._stream_session is not None and self._pool is not None and len(tensor) > 1:
                outputs = self._run_streams(self._stream_session, self._pool, names, tensor)
            elif self.provider == "cpu":
                outputs = self._session.run(names, {m.input_name: tensor})
            else:
                binding = self._session.io_binding()
                binding.bind_cpu_input(m.input_name, np.ascontiguousarray(tensor))
                for name in names:
                    binding.bind_output(name, "cpu")
                self._session.run_with_iobinding(binding)
                outputs = binding.copy_outputs_to_cpu()
        got = dict(zip(names, outputs, strict=True))

        def output(name: str | None) -> npt.NDArray[np.float32] | None:
            return np.asarray(got[name], dtype=np.float32) if name in got else None

        probabilities = output(m.probabilities_output)
        assert probabilities is not None
        return ModelOutputs(probabilities, output(m.embedding_output), output(m.ood_output))

    def _run_streams(
        self,
        session: ort.InferenceSession,
        pool: ThreadPoolExecutor,
        names: list[str],
        tensor: npt.NDArray[np.generic],
    ) -> list[npt.NDArray[Any]]:
        """Run contiguous sub-batches concurrently (ONNX Runtime releases the GIL)."""
        name = self.manifest.input_name
        parts = np.array_split(tensor, min(self.cpu_streams, len(tensor)))
        futures = [pool.submit(session.run, names, {name: part}) for part in parts[1:]]
        results = [session.run(names, {name: parts[0]})]  # the calling thread does one part
        results += [future.result() for future in futures]
        return [np.concatenate([r[i] for r in results]) for i in range(len(names))]

    def map_streams(self, work: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``work`` over ``items`` in contiguous parts, one per CPU stream, in order.

        Decoding and resizing release the GIL in OpenCV, so on a CPU engine with
        streams the batch's images are decoded and cropped on every core, as its
        inference runs, instead of on one while the others wait. Callers with
        per-image work of their own (fingerprints) use it too. Not reentrant: call
        it from the thread that runs the engine, outside ``work``.
        """
        pool = self._pool
        if pool is None or len(items) < 2:
            return [work(item) for item in items]
        bounds = np.linspace(0, len(items), min(self.cpu_streams, len(items)) + 1).astype(int)
        parts = [items[a:b] for a, b in itertools.pairwise(bounds)]

        def run(part: Sequence[Any]) -> list[Any]:
            return [work(x) for x in part]

        futures = [pool.submit(run, part) for part in parts[1:]]
        out = run(parts[0])
        for future in futures:
            out += future.result()
        return out

    def _decode_one(self, blob: bytes, limits: ImageLimits) -> DecodedImage | InferenceError:
        try:
            return decode_image(blob, limits, min_side=self.manifest.resize_short_side)
        except ImageError as exc:
            return exc
        except Exception as exc:  # a decoder bug must not sink the batch
            logger.exception("unexpected error decoding an image")
            return ImageError("image.decode_failed", f"unexpected decoder error: {exc!r}")

    def predict_bytes(
        self, blobs: Sequence[bytes], limits: ImageLimits, *, with_embedding: bool = False
    ) -> BatchResult:
        """Decode, preprocess and classify ``blobs``; one result per blob, in order."""
        start = time.perf_counter()
        decoded = self.decode_all(blobs, limits)
        decode_s = time.perf_counter() - start
        result = self.predict_decoded(decoded, with_embedding=with_embedding)
        return BatchResult(
            items=result.items,
            timings=StageTimings(decode_s, result.timings.preprocess_s, result.timings.inference_s),
        )

    def decode_all(
        self, blobs: Sequence[bytes], limits: ImageLimits
    ) -> list[DecodedImage | InferenceError]:
        """Decode ``blobs`` for this model (reduced to its input size); errors in place.

        On a CPU engine with streams the images are decoded on every core at once.
        """
        return self.map_streams(lambda blob: self._decode_one(blob, limits), blobs)

    def predict_decoded(
        self,
        images: Sequence[DecodedImage | InferenceError],
        *,
        with_embedding: bool = False,
    ) -> BatchResult:
        """Classify already decoded images; errors given in ``images`` pass through in place."""
        items: list[Prediction | InferenceError] = [
            img if isinstance(img, InferenceError) else _PENDING for img in images
        ]
        positions = [i for i, img in enumerate(images) if isinstance(img, DecodedImage)]
        preprocess_s = inference_s = 0.0
        for chunk_start in range(0, len(positions), self.max_batch_size):
            chunk = positions[chunk_start : chunk_start + self.max_batch_size]
            good = [img for i in chunk if isinstance(img := images[i], DecodedImage)]
            t0 = time.perf_counter()
            crops = self.preprocessor.crops([img.pixels for img in good], map_fn=self.map_streams)
            tensor = self.preprocessor.to_model_input(crops)
            blurry = sharpness(crops) < BLUR_THRESHOLD
            t1 = time.perf_counter()
            preprocess_s += t1 - t0
            try:
                outputs = self.infer_outputs(tensor, with_embedding=with_embedding)
            except Exception as exc:  # device OOM, driver reset...: every item of this chunk
                logger.exception("inference failed for a batch of %d", len(chunk))
                error = InferenceRunError(
                    "inference.failed", f"inference failed for a batch of {len(chunk)}: {exc}"
                )
                for i in chunk:
                    items[i] = error
                inference_s += time.perf_counter() - t1
                continue
            inference_s += time.perf_counter() - t1
            predictions = self._postprocess(outputs, good, blurry)
            for i, prediction in zip(chunk, predictions, strict=True):
                items[i] = prediction
        return BatchResult(items=items, timings=StageTimings(0.0, preprocess_s, inference_s))

    def predict_paths(
        self, paths: Sequence[Path], limits: ImageLimits, *, with_embedding: bool = False
    ) -> BatchResult:
        """``predict_bytes`` on files (a convenience for the CLI, notebooks and tests)."""
        return self.predict_bytes(
            [Path(p).read_bytes() for p in paths], limits, with_embedding=with_embedding
        )

    @property
    def review_thresholds(self) -> ReviewThresholds:
        """The thresholds this engine flags with (settings over the manifest's)."""
        return ReviewThresholds(
            kind_threshold=self.kind_threshold,
            ood_threshold=self.ood_threshold,
            product_threshold=self.product_threshold,
            confidence_threshold=self.confidence_threshold,
        )

    def review_scores(
        self, probabilities: npt.NDArray[np.floating], ood: npt.NDArray[np.floating] | None
    ) -> LevelScores:
        """The top product's probability and the top kind's and category's mass, per row."""
        return level_scores(probabilities, self._kind_matrix, self._category_matrix, ood)

    def review_masks(
        self, probabilities: npt.NDArray[np.floating], ood: npt.NDArray[np.floating] | None
    ) -> dict[str, npt.NDArray[np.bool_]]:
        """Each review and informational flag's mask over the rows (``vitrine evaluate``)."""
        return review_masks(self.review_scores(probabilities, ood), self.review_thresholds)

    def _review_flags(self, outputs: ModelOutputs) -> list[tuple[str, ...]]:
        """The review and informational flags per row (:mod:`inference.serving.review`)."""
        scores = self.review_scores(outputs.probabilities, outputs.ood)
        return review_flags(scores, self.review_thresholds)

    def _postprocess(
        self,
        outputs: ModelOutputs,
        images: Sequence[DecodedImage],
        blurry: npt.NDArray[np.bool_],
    ) -> list[Prediction]:
        probabilities, embeddings = outputs.probabilities, outputs.embedding
        review = self._review_flags(outputs)
        k = self.top_k
        top = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(probabilities, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        category_scores = probabilities @ self._category_matrix
        best = category_scores.argmax(axis=1)
        kind_scores = probabilities @ self._kind_matrix
        best_kind = kind_scores.argmax(axis=1)
        labels = self.manifest.labels
        predictions = []
        for row, image in enumerate(images):
            flags = image.flags
            if blurry[row]:
                flags = (*flags, "blurry")
            flags = (*flags, *review[row])
            predictions.append(
                Prediction(
                    labels=tuple(
                        (labels[j], float(s))
                        for j, s in zip(top[row], top_scores[row], strict=True)
                    ),
                    category=self._categories[best[row]],
                    score=float(category_scores[row, best[row]]),
                    model_name=self.model_name,
                    model_version=self.model_version,
                    flags=flags,
                    embedding=embeddings[row].copy() if embeddings is not None else None,
                    ood_score=float(outputs.ood[row]) if outputs.ood is not None else None,
                    kind=self._kinds[best_kind[row]],
                    kind_score=float(kind_scores[row, best_kind[row]]),
                )
            )
        return predictions


_PENDING = InferenceRunError("inference.failed", "not processed")


def predict_with_fingerprints(
    engine: Engine, blobs: Sequence[bytes], limits: ImageLimits, *, with_features: bool = True
) -> tuple[BatchResult, list[Fingerprint | None]]:
    """``engine.predict_bytes`` with embeddings, and each decoded photo's fingerprint.

    The fingerprint is None where the image failed to decode or be inferred;
    ``with_features``: with the photo's local features (what verifies a disguised copy).
    Hashing (about a millisecond a photo, on the decoded pixels) counts as decoding.
    A function rather than a method, so it runs on anything with the engine's
    ``decode_all``, ``predict_decoded`` and ``map_streams`` (tests wrap the engine).
    """
    start = time.perf_counter()
    decoded = engine.decode_all(blobs, limits)
    decode_s = time.perf_counter() - start
    result = engine.predict_decoded(decoded, with_embedding=True)
    start = time.perf_counter()
    prints: list[Fingerprint | None] = engine.map_streams(
        lambda pair: (
            fingerprint(pair[0].pixels, pair[1].embedding, with_features=with_features)
            if isinstance(pair[0], DecodedImage) and isinstance(pair[1], Prediction)
            else None
        ),
        list(zip(decoded, result.items, strict=True)),
    )
    decode_s += time.perf_counter() - start
    timings = StageTimings(decode_s, result.timings.preprocess_s, result.timings.inference_s)
    return BatchResult(items=result.items, timings=timings), prints


def _fp16_model_bytes(path: Path) -> bytes:
    """An FP16 copy of an FP32 graph with FP32/uint8 inputs and outputs kept as they are."""
    # Imported here: only GPU starts need them, and onnx is slow to import.
    import onnx  # noqa: PLC0415
    from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415

    model = onnx.load(str(path))
    half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    return bytes(half.SerializeToString())
