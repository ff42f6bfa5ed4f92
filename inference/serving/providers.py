"""Execution providers: which ones can run here, and how each is configured.

onnxruntime-gpu lists TensorRT and CUDA as "available" on any machine and then
prints pages of loader errors when they are asked for without the CUDA runtime,
cuBLAS, cuDNN (or TensorRT) libraries and a device. So a GPU provider is chosen
only after a probe: its libraries are loaded with ``ctypes`` and the CUDA
runtime is asked for a device, which keeps a CPU-only start quiet.
:class:`~inference.serving.engine.Engine` takes the providers, the session
options and each provider's options from here.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

try:
    from onnxruntime.capi import build_and_package_info as _build_info
except ImportError:  # pragma: no cover - some CPU-only wheels lack the module
    _build_info = None

from inference.serving.defaults import DEFAULT_MAX_BATCH_SIZE

__all__ = [
    "PROVIDERS",
    "ProviderOptions",
    "ProviderProbe",
    "available_cpus",
    "describe_device",
    "probe_providers",
    "select_providers",
    "session_options",
    "short_name",
]

logger = logging.getLogger(__name__)


#: Short provider names (as in ``VITRINE_EXECUTION_PROVIDERS``) -> ONNX Runtime names.
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_SHORT = {v: k for k, v in PROVIDERS.items()}


def short_name(ort_name: str) -> str:
    """The short name of an ONNX Runtime provider name (``cpu`` for one we do not know)."""
    return _SHORT.get(ort_name, "cpu")


# --------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class ProviderProbe:
    """Whether one execution provider can run here, and why not."""

    provider: str
    usable: bool
    reason: str = ""


def _library_dirs() -> list[str]:
    """Folders where pip-installed NVIDIA wheels keep their shared libraries."""
    dirs: list[str] = []
    for base in sys.path:
        for pattern in ("nvidia/cu*/lib", "nvidia/*/lib", "tensorrt_libs"):
            dirs.extend(d for d in glob.glob(os.path.join(base, pattern)) if os.path.isdir(d))
    return dirs


def _load_library(name: str, dirs: Sequence[str]) -> str | None:
    """Load ``name`` globally (so ONNX Runtime's provider finds it); return an error or None."""
    error = ""
    for candidate in [*(os.path.join(d, name) for d in dirs), name]:
        if candidate != name and not os.path.exists(candidate):
            continue
        try:
            ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
            return None
        except OSError as exc:
            error = str(exc)
    return error or f"{name} not found"


def _cuda_major() -> str:
    """The CUDA major version onnxruntime was built for ("" for CPU-only builds)."""
    return str(getattr(_build_info, "cuda_version", "") or "").split(".")[0]


def _gpu_libraries(provider: str) -> list[str]:
    major = _cuda_major()
    libs = [
        "libcuda.so.1",  # the driver
        f"libcudart.so.{major}",
        f"libcublasLt.so.{major}",
        f"libcublas.so.{major}",
        "libcurand.so.10",
        "libcudnn.so.9",
    ]
    if provider == "tensorrt":
        libs += ["libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10"]
    return libs


def _cuda_device(device_id: int) -> tuple[bool, str]:
    """Ask the CUDA runtime how many devices there are; return (ok, name or reason)."""
    try:
        cudart = ctypes.CDLL(f"libcudart.so.{_cuda_major()}", mode=ctypes.RTLD_GLOBAL)
        count = ctypes.c_int(0)
        status = cudart.cudaGetDeviceCount(ctypes.byref(count))
    except (OSError, AttributeError) as exc:
        return False, f"CUDA runtime unusable: {exc}"
    if status != 0 or count.value == 0:
        return False, f"no CUDA device (cudaGetDeviceCount status {status}, count {count.value})"
    if device_id >= count.value:
        return False, f"device {device_id} requested, {count.value} present"
    props = ctypes.create_string_buffer(8192)  # cudaDeviceProp begins with char name[256]
    for symbol in ("cudaGetDeviceProperties_v2", "cudaGetDeviceProperties"):
        function = getattr(cudart, symbol, None)
        if function is not None and function(props, device_id) == 0:
            return True, props.raw[:256].split(b"\0", 1)[0].decode(errors="replace")
    return True, f"CUDA device {device_id}"


def probe_providers(
    requested: Sequence[str], *, device_id: int = 0
) -> tuple[list[str], list[ProviderProbe]]:
    """Return the usable providers among ``requested`` (short names, in order) and why.

    CPU is always usable and is appended when missing, so a session can start anywhere.
    """
    unknown = [p for p in requested if p not in PROVIDERS]
    if unknown:
        raise ValueError(
            f"unknown execution provider(s) {unknown} in VITRINE_EXECUTION_PROVIDERS; "
            f"known: {', '.join(PROVIDERS)}"
        )
    available = set(ort.get_available_providers())
    usable: list[str] = []
    probes: list[ProviderProbe] = []
    dirs: list[str] | None = None
    device: tuple[bool, str] | None = None
    for provider in dict.fromkeys([*requested, "cpu"]):
        if provider == "cpu":
            usable.append(provider)
            probes.append(ProviderProbe(provider, True, "always available"))
            continue
        if PROVIDERS[provider] not in available:
            probes.append(ProviderProbe(provider, False, "not built into this onnxruntime"))
            continue
        dirs = _library_dirs() if dirs is None else dirs
        missing = [
            f"{lib} ({err})"
            for lib in _gpu_libraries(provider)
            if (err := _load_library(lib, dirs)) is not None
        ]
        if missing:
            probes.append(ProviderProbe(provider, False, "cannot load " + "; ".join(missing)))
            continue
        device = _cuda_device(device_id) if device is None else device
        if not device[0]:
            probes.append(ProviderProbe(provider, False, device[1]))
            continue
        usable.append(provider)
        probes.append(ProviderProbe(provider, True, device[1]))
    return usable, probes


def select_providers(
    requested: Sequence[str], *, device_id: int = 0
) -> tuple[list[str], list[ProviderProbe]]:
    """The requested providers that can run here, in the order asked (CPU if none can).

    Names are trimmed and lower-cased; unusable providers are logged at debug
    level, and a warning says why when none of those asked for is usable.
    Returns the providers to ask ONNX Runtime for and every probe.
    """
    wanted = [p.strip().lower() for p in requested]
    usable, probes = probe_providers(wanted, device_id=device_id)
    for probe in probes:
        if not probe.usable:
            logger.debug("execution provider %s skipped: %s", probe.provider, probe.reason)
    if not any(p in usable for p in wanted):
        skipped = "; ".join(f"{p.provider}: {p.reason}" for p in probes if not p.usable)
        logger.warning("no requested execution provider is usable (%s); using cpu", skipped)
    return [p for p in usable if p in wanted] or ["cpu"], probes


# --------------------------------------------------------------------------- configuration


def session_options(intra_op_threads: int, inter_op_threads: int) -> ort.SessionOptions:
    """Session options for every provider: full graph optimisation, no spinning, quiet logs."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.log_severity_level = 3  # errors only: provider fallbacks are logged by us
    # Do not busy-wait between runs: decode and preprocessing need those cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


@dataclass(frozen=True)
class ProviderOptions:
    """What the GPU providers need to know about the device and the model's input.

    ``image_shape`` is one image's input shape (without the batch axis); with
    ``input_name`` and ``max_batch_size`` it sizes TensorRT's optimisation
    profile. ``fp16`` lets TensorRT build FP16 kernels; ``cache_dir`` keeps its
    built engines between starts.
    """

    input_name: str
    image_shape: tuple[int, ...]
    device_id: int = 0
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    fp16: bool = True
    cache_dir: Path | None = None

    def for_provider(self, provider: str) -> dict[str, str]:
        """ONNX Runtime's options for ``provider`` (a short name)."""
        if provider == "cuda":
            return {"device_id": str(self.device_id), "cudnn_conv_algo_search": "HEURISTIC"}
        if provider == "tensorrt":
            shape = "x".join(str(d) for d in self.image_shape)
            name = self.input_name
            options = {
                "device_id": str(self.device_id),
                "trt_fp16_enable": str(self.fp16),
                "trt_profile_min_shapes": f"{name}:1x{shape}",
                "trt_profile_opt_shapes": f"{name}:{min(32, self.max_batch_size)}x{shape}",
                "trt_profile_max_shapes": f"{name}:{self.max_batch_size}x{shape}",
            }
            if self.cache_dir is not None:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                options |= {
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": str(self.cache_dir),
                }
            return options
        return {}

    def session_providers(self, usable: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
        """The ``providers`` argument of ``ort.InferenceSession`` for ``usable``, in order."""
        return [(PROVIDERS[p], self.for_provider(p)) for p in usable]


# --------------------------------------------------------------------------- the device


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(provider: str, probes: Sequence[ProviderProbe], *, device_id: int = 0) -> str:
    """A readable name of what ``provider`` runs on: the CPU model, or the GPU's name."""
    if provider == "cpu":
        return f"CPU: {_cpu_name()}, {os.cpu_count()} logical cores"
    name = next((p.reason for p in probes if p.provider == provider), f"CUDA device {device_id}")
    return f"GPU {device_id}: {name}"
