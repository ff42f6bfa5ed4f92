"""Export a fine-tuned EfficientNet-Lite to the serving graph, with calibration and OOD score.

The graph keeps the shipped models' contract (``image``: uint8 ``(N, H, W, 3)``
RGB crops; normalisation and layout inside the graph) and has three outputs:

- ``probabilities``: ``softmax(logits / T)``, the temperature ``T`` fitted on
  held-out data so that the top-1 probability is a calibrated confidence;
- ``embedding``: the pooled penultimate layer (visual search, duplicates);
- ``ood_score``: how much the image looks like the training data, higher is
  more familiar; ``centroid`` (the default) is the largest cosine similarity
  of the embedding to a class centroid of the training images, ``energy`` the
  free energy ``T * logsumexp(logits / T)``.

torch is imported inside functions only (see :mod:`inference.training.full_finetune`).
"""

# ruff: noqa: PLC0415
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OOD_KINDS", "embeddings_and_logits", "export_finetuned", "verify_export"]

logger = logging.getLogger(__name__)

OOD_KINDS = ("centroid", "energy")
MEAN, STD = 127.0, 128.0


def _served_module(net: Any, temperature: float, centroids: np.ndarray | None, kind: str) -> Any:
    import torch

    class Served(torch.nn.Module):  # type: ignore[misc]
        """Normalisation + network + calibrated softmax, embedding and OOD score."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("inv_t", torch.tensor(1.0 / temperature))
            c = torch.zeros(1, 1) if centroids is None else torch.from_numpy(centroids)
            self.register_buffer("centroids", c.to(torch.float32))

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            x = ((image.to(torch.float32) - MEAN) / STD).permute(0, 3, 1, 2)
            features = self.net.extract_features(x)
            embedding = torch.flatten(self.net._avg_pooling(features), 1)
            scaled = self.net._fc(embedding) * self.inv_t
            if kind == "energy":
                ood = torch.logsumexp(scaled, dim=1) / self.inv_t
            else:
                unit = embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-6)
                ood = (unit @ self.centroids.T).amax(dim=1)
            return torch.softmax(scaled, dim=1), embedding, ood

    return Served().eval()


def embeddings_and_logits(
    net: Any, crops: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled embeddings and raw logits of ``net`` for uint8 NHWC crops (FP32, eval mode)."""
    import torch

    net.eval()
    embs, logits = [], []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            x = torch.from_numpy(crops[start : start + batch_size]).to(torch.float32)
            x = ((x - MEAN) / STD).permute(0, 3, 1, 2).contiguous()
            emb = torch.flatten(net._avg_pooling(net.extract_features(x)), 1)
            embs.append(emb.numpy())
            logits.append(net._fc(emb).numpy())
    return np.concatenate(embs), np.concatenate(logits)


def export_finetuned(
    net: Any,
    onnx_path: Path,
    *,
    size: int,
    temperature: float,
    centroids: np.ndarray | None,
    ood_kind: str = "centroid",
    opset: int = 17,
) -> Any:
    """Write the serving graph to ``onnx_path``; return the torch module it was traced from."""
    import onnx
    import torch

    if ood_kind not in OOD_KINDS:
        raise ValueError(f"ood_kind must be one of {OOD_KINDS}, not {ood_kind!r}")
    module = _served_module(net.float().eval(), temperature, centroids, ood_kind)
    example = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        input_names=["image"],
        output_names=["probabilities", "embedding", "ood_score"],
        dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=4096)}},
        opset_version=opset,
        external_data=False,
        optimize=True,
    )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(onnx_path), external_data=False)
    model = onnx.load(str(onnx_path))
    # Source paths and line numbers in node metadata would make the file machine-dependent.
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.metadata_props[:]
    model.producer_name = "vitrine"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(onnx_path))
    return module


def verify_export(module: Any, onnx_path: Path, crops: np.ndarray) -> dict[str, float]:
    """Largest |ONNX Runtime - torch| per output on ``crops``; raise if top-1 classes differ."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = ["probabilities", "embedding", "ood_score"]
    with torch.inference_mode():
        expected = [t.numpy() for t in module(torch.from_numpy(crops))]
    got = session.run(names, {"image": crops})
    diffs = {n: float(np.abs(g - e).max()) for n, g, e in zip(names, got, expected, strict=True)}
    if not np.array_equal(got[0].argmax(1), expected[0].argmax(1)):
        raise RuntimeError(f"ONNX Runtime and torch disagree on a top-1 class ({diffs})")
    return diffs
