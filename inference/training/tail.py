"""The end of the backbone graph as data: the nodes from a cut tensor to the pooled features.

To fine-tune the last blocks without re-running the whole network, the
features are cached at a *cut*: a tensor that alone (with constants) determines
everything from there to the pooled ``embedding``. Block outputs of a chain of
residual blocks are such cuts; tensors inside a residual block are not (the
skip connection needs the block input too). :func:`find_tail` returns the
latest cut whose tail holds at least ``min_convs`` convolutions, with the
nodes, the constants they read and the names of the weights to train, so a
framework with autograd (:mod:`inference.training.torch_finetune`) can rebuild
and train exactly that part, and the tuned weights can replace the same
initializers in the exported graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from inference.training.backbone import Backbone

__all__ = ["SUPPORTED_OPS", "Tail", "TailNode", "find_pool", "find_tail"]

logger = logging.getLogger(__name__)

#: Ops a tail may contain (what EfficientNet/MobileNet-style endings use).
SUPPORTED_OPS = frozenset(
    {"Conv", "Clip", "Relu", "Add", "Mul", "Sigmoid", "ReduceMean", "GlobalAveragePool"}
)
# Shape-only ops between the pool and the embedding output ("Gather" is how a
# dynamo export spells torch.flatten).
_PASS_OPS = frozenset({"Flatten", "Reshape", "Squeeze", "Gather", "Identity"})


@dataclass(frozen=True)
class TailNode:
    """One graph node of the tail."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tail:
    """Nodes from ``cut`` to ``pooled``; ``constants`` holds every non-computed input."""

    cut: str
    pooled: str  # output of the global pool, (N, C, 1, 1)
    nodes: tuple[TailNode, ...]
    constants: dict[str, np.ndarray]
    trainable: tuple[str, ...]  # conv weights and biases, in graph order
    n_convs: int

    @property
    def n_parameters(self) -> int:
        """Number of trainable values."""
        return int(sum(self.constants[name].size for name in self.trainable))


def find_pool(model: onnx.ModelProto, embedding: str) -> onnx.NodeProto | None:
    """The global-average-pool node the embedding output comes from (through shape ops)."""
    producers: dict[str, onnx.NodeProto] = {
        out: node for node in model.graph.node for out in node.output
    }
    node = producers.get(embedding)
    while node is not None and node.op_type in _PASS_OPS:
        node = producers.get(node.input[0])
    if node is None or node.op_type not in ("GlobalAveragePool", "ReduceMean"):
        return None
    return node


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def find_tail(backbone: Backbone, min_convs: int) -> Tail | None:
    """The latest cut with at least ``min_convs`` Conv nodes after it; None if there is none."""
    model = onnx.load(str(backbone.onnx_path))
    pool = find_pool(model, backbone.embedding_output)
    if pool is None:
        return None
    nodes = list(model.graph.node)
    index = {id(n): i for i, n in enumerate(nodes)}
    producer = {out: i for i, n in enumerate(nodes) for out in n.output}
    inits = {i.name: i for i in model.graph.initializer}

    # Tensors that do not depend on the image: initializers, Constant nodes and
    # anything computed only from those.
    constant: set[str] = set(inits)
    for n in nodes:
        if all((not i) or i in constant for i in n.input):
            constant.update(n.output)

    # Ancestors of the pool (the nodes that can matter), walking back.
    needed: set[int] = set()
    stack = [index[id(pool)]]
    while stack:
        i = stack.pop()
        if i in needed:
            continue
        needed.add(i)
        stack.extend(producer[x] for x in nodes[i].input if x in producer and x not in constant)

    pool_i = index[id(pool)]
    chain = sorted(needed, reverse=True)
    for i in chain:
        if i == pool_i:
            continue
        for cut in nodes[i].output:
            part = [j for j in sorted(needed) if j > i and _depends_on(nodes, producer, j, cut, i)]
            external = {
                x
                for j in part
                for x in nodes[j].input
                if x and x not in constant and producer.get(x) not in part
            }
            if external != {cut}:
                continue
            ops = [nodes[j] for j in part if not set(nodes[j].output) <= constant]
            if any(n.op_type not in SUPPORTED_OPS for n in ops):
                return None  # an op this module cannot rebuild: stop looking further back
            n_convs = sum(n.op_type == "Conv" for n in ops)
            if n_convs < min_convs:
                continue
            used = {x for n in ops for x in n.input if x and x in constant}
            values = _constant_values(backbone, model, used, inits)
            trainable = tuple(
                x for n in ops if n.op_type == "Conv" for x in n.input[1:] if x in inits
            )
            return Tail(
                cut=cut,
                pooled=pool.output[0],
                nodes=tuple(
                    TailNode(n.op_type, tuple(n.input), tuple(n.output), _attrs(n)) for n in ops
                ),
                constants=values,
                trainable=trainable,
                n_convs=n_convs,
            )
    return None


def _depends_on(
    nodes: list[onnx.NodeProto], producer: dict[str, int], j: int, cut: str, cut_node: int
) -> bool:
    """Whether node ``j`` reads ``cut`` directly or through nodes after ``cut_node``."""
    stack = [j]
    seen: set[int] = set()
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        for x in nodes[k].input:
            if x == cut:
                return True
            p = producer.get(x)
            if p is not None and p > cut_node:
                stack.append(p)
    return False


def _constant_values(
    backbone: Backbone, model: onnx.ModelProto, names: set[str], inits: dict[str, onnx.TensorProto]
) -> dict[str, np.ndarray]:
    """Values of constant tensors: initializers directly, computed ones by running the graph."""
    values = {n: numpy_helper.to_array(inits[n]) for n in names if n in inits}
    computed = sorted(names - values.keys())
    if computed:
        session = backbone.session(extra_outputs=computed)
        size = backbone.input_size
        dummy = np.zeros((1, size, size, 3), np.uint8)
        outs = session.run(computed, {backbone.manifest.input_name: backbone.to_input(dummy)})
        values.update({n: np.asarray(v) for n, v in zip(computed, outs, strict=True)})
    return values
