"""Compose one ONNX model: the backbone graph with a trained head on its ``embedding``.

The backbone's own classifier (the ImageNet ``probabilities``) is pruned; the
new head (Gemm [+ Relu + Gemm] + Softmax) reads ``embedding`` and writes a new
``probabilities`` output with one column per trained class. The input, the
preprocessing folded into the graph, the dynamic batch axis and the
``embedding`` output are those of the backbone, so the engine serves the result
with no code change. Fine-tuned backbone weights replace initializers by name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference.training.errors import TrainError

__all__ = ["compose_model", "prune_to_outputs"]

logger = logging.getLogger(__name__)


def prune_to_outputs(graph: onnx.GraphProto, keep: Sequence[str]) -> None:
    """Drop the nodes, initializers and outputs that no output in ``keep`` depends on."""
    producers = {out: node for node in graph.node for out in node.output}
    needed: set[str] = set()
    live_nodes: set[int] = set()
    stack = list(keep)
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producers.get(name)
        if node is None:
            continue
        live_nodes.add(id(node))
        stack.extend(i for i in node.input if i)
        # Sub-graphs (If/Loop) may read outer names.
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                stack.extend(_outer_names(attr.g))
    kept = [n for n in graph.node if id(n) in live_nodes]
    del graph.node[:]
    graph.node.extend(kept)
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    outs = [o for o in graph.output if o.name in keep]
    del graph.output[:]
    graph.output.extend(outs)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def _outer_names(g: onnx.GraphProto) -> list[str]:
    return [i for n in g.node for i in n.input if i]


def _embedding_dims(
    graph: onnx.GraphProto,
    backbone_onnx: Path,
    embedding_output: str,
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
) -> Any:
    """The ``embedding`` output's shape dims, after checking the head's input width fits them."""
    outputs = {o.name: o for o in graph.output}
    if embedding_output not in outputs:
        raise TrainError(
            "train.failed", f"{backbone_onnx} has no '{embedding_output}' output to put a head on"
        )
    embedding_info = outputs[embedding_output]
    emb_dims = embedding_info.type.tensor_type.shape.dim
    if emb_dims and emb_dims[-1].dim_value and emb_dims[-1].dim_value != layers[0][0].shape[0]:
        raise TrainError(
            "train.failed",
            f"head expects {layers[0][0].shape[0]}-d features but {backbone_onnx} "
            f"'{embedding_output}' is {emb_dims[-1].dim_value}-d",
        )
    return emb_dims


def _replace_initializers(graph: onnx.GraphProto, values: Mapping[str, np.ndarray]) -> None:
    """Overwrite initializers by name (fine-tuned weights), keeping each one's shape and dtype."""
    by_name = {i.name: i for i in graph.initializer}
    for name, value in values.items():
        old = by_name.get(name)
        if old is None:
            raise TrainError(
                "train.failed",
                f"fine-tuned weight {name} is not an initializer of the backbone",
            )
        if tuple(old.dims) != value.shape:
            raise TrainError(
                "train.failed",
                f"fine-tuned weight {name} has shape {value.shape}, backbone has {tuple(old.dims)}",
            )
        dtype = onnx.helper.tensor_dtype_to_np_dtype(old.data_type)
        old.CopyFrom(numpy_helper.from_array(value.astype(dtype), name))


def _append_head(
    graph: onnx.GraphProto,
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
    embedding_output: str,
    probabilities_output: str,
) -> None:
    """Add Gemm [+ Relu + Gemm] + Softmax nodes from ``embedding_output``, under a fresh prefix."""
    used = {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output}
    prefix = "vitrine_head"
    while any(name.startswith(prefix) for name in used):
        prefix += "_"
    current = embedding_output
    for i, (w, b) in enumerate(layers):
        w_name, b_name, out_name = f"{prefix}/w{i}", f"{prefix}/b{i}", f"{prefix}/gemm{i}"
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.ascontiguousarray(w, np.float32), w_name),
                numpy_helper.from_array(np.ascontiguousarray(b, np.float32), b_name),
            ]
        )
        graph.node.append(
            helper.make_node(
                "Gemm", [current, w_name, b_name], [out_name], name=f"{prefix}/Gemm{i}"
            )
        )
        current = out_name
        if i < len(layers) - 1:
            relu_out = f"{prefix}/relu{i}"
            graph.node.append(
                helper.make_node("Relu", [current], [relu_out], name=f"{prefix}/Relu{i}")
            )
            current = relu_out
    graph.node.append(
        helper.make_node(
            "Softmax", [current], [probabilities_output], axis=1, name=f"{prefix}/Softmax"
        )
    )


def compose_model(
    backbone_onnx: Path,
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    embedding_output: str = "embedding",
    probabilities_output: str = "probabilities",
    replace_initializers: Mapping[str, np.ndarray] | None = None,
    doc: str = "",
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """The backbone graph with ``layers`` (folded Gemm weights, ReLU between) as its head.

    ``layers[0]`` takes the ``embedding``; the last layer's width is the number
    of classes. Returns a checked model (not yet saved).
    """
    model = onnx.load(str(backbone_onnx))
    graph = model.graph
    emb_dims = _embedding_dims(graph, backbone_onnx, embedding_output, layers)

    prune_to_outputs(graph, [embedding_output])

    if replace_initializers:
        _replace_initializers(graph, replace_initializers)

    _append_head(graph, layers, embedding_output, probabilities_output)
    batch_dim = emb_dims[0] if emb_dims else None
    probs_info = helper.make_tensor_value_info(
        probabilities_output,
        TensorProto.FLOAT,
        [
            (batch_dim.dim_param or batch_dim.dim_value or "batch") if batch_dim else "batch",
            int(layers[-1][0].shape[1]),
        ],
    )
    # probabilities first, embedding second: the shipped model's output order.
    kept_outputs = list(graph.output)
    del graph.output[:]
    graph.output.extend([probs_info, *kept_outputs])

    if doc:
        model.doc_string = doc
    if metadata:
        del model.metadata_props[:]
        for key, text in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, text
    onnx.checker.check_model(model)
    logger.info(
        "composed %s + %d-layer head -> %d classes",
        backbone_onnx.name,
        len(layers),
        layers[-1][0].shape[1],
    )
    return model
