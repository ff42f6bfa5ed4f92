"""Execution-provider probing and configuration (no GPU needed)."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort
import pytest

from inference.serving.providers import (
    PROVIDERS,
    ProviderOptions,
    ProviderProbe,
    describe_device,
    probe_providers,
    select_providers,
    short_name,
)


def test_probe_providers() -> None:
    usable, probes = probe_providers(["cuda", "cpu"])
    assert usable[-1] == "cpu"
    assert {p.provider for p in probes} == {"cuda", "cpu"}
    with pytest.raises(ValueError, match="VITRINE_EXECUTION_PROVIDERS"):
        probe_providers(["tpu"])


def test_cpu_is_probed_even_when_not_asked_for() -> None:
    usable, probes = probe_providers(["cpu"])
    assert usable == ["cpu"]
    assert probes == [ProviderProbe("cpu", True, "always available")]


def test_select_providers_falls_back_to_cpu_and_says_why(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger="inference.serving.providers"):
        usable, probes = select_providers([" CUDA ", "TensorRT"])
    assert usable == ["cpu"]
    assert [(p.provider, p.usable) for p in probes] == [
        ("cuda", False),
        ("tensorrt", False),
        ("cpu", True),
    ]
    assert "cuda: not built into this onnxruntime" in caplog.text


def test_select_providers_keeps_the_order_asked() -> None:
    usable, _ = select_providers(["cpu", "cuda"])
    assert usable[0] == "cpu"


def test_short_names() -> None:
    for short, long in PROVIDERS.items():
        assert short_name(long) == short
    assert short_name("AzureExecutionProvider") == "cpu"


def test_tensorrt_options_size_the_profile_and_cache(tmp_path: Path) -> None:
    cache = tmp_path / "trt"
    options = ProviderOptions(
        input_name="image",
        image_shape=(224, 224, 3),
        max_batch_size=64,
        fp16=False,
        cache_dir=cache,
    ).for_provider("tensorrt")
    assert options["trt_profile_min_shapes"] == "image:1x224x224x3"
    assert options["trt_profile_opt_shapes"] == "image:32x224x224x3"
    assert options["trt_profile_max_shapes"] == "image:64x224x224x3"
    assert options["trt_fp16_enable"] == "False"
    assert options["trt_engine_cache_path"] == str(cache)
    assert cache.is_dir()


def test_session_providers_in_order() -> None:
    options = ProviderOptions(input_name="image", image_shape=(3, 224, 224), device_id=1)
    chosen = options.session_providers(["cuda", "cpu"])
    assert chosen == [
        ("CUDAExecutionProvider", {"device_id": "1", "cudnn_conv_algo_search": "HEURISTIC"}),
        ("CPUExecutionProvider", {}),
    ]


def test_describe_device() -> None:
    assert describe_device("cpu", []).startswith("CPU: ")
    probes = [ProviderProbe("cuda", True, "NVIDIA H100")]
    assert describe_device("cuda", probes, device_id=0) == "GPU 0: NVIDIA H100"
