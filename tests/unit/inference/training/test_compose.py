"""Composing backbone + head into one ONNX graph, and the fine-tunable tail."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest

from inference.serving.manifest import IMAGENET_MODEL, default_model_dir
from inference.training.backbone import load_backbone
from inference.training.compose import compose_model
from inference.training.tail import find_tail


def _session(model: bytes | str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)


def test_composed_graph_is_backbone_embedding_then_head(crops: np.ndarray) -> None:
    backbone = load_backbone(default_model_dir(IMAGENET_MODEL))
    rng = np.random.default_rng(1)
    layers = [
        (
            rng.normal(0, 0.05, (1280, 16)).astype(np.float32),
            rng.normal(0, 0.1, 16).astype(np.float32),
        ),
        (rng.normal(0, 0.3, (16, 5)).astype(np.float32), rng.normal(0, 0.1, 5).astype(np.float32)),
    ]
    model = compose_model(backbone.onnx_path, layers)
    session = _session(model.SerializeToString())
    assert [o.name for o in session.get_outputs()] == ["probabilities", "embedding"]
    assert session.get_outputs()[0].shape[1] == 5
    assert session.get_inputs()[0].name == backbone.manifest.input_name

    reference = _session(str(backbone.onnx_path))
    (emb,) = reference.run(["embedding"], {"image": crops})
    probs, emb2 = session.run(None, {"image": crops})
    np.testing.assert_allclose(emb2, emb, atol=1e-5)
    hidden = np.maximum(emb @ layers[0][0] + layers[0][1], 0)
    logits = hidden @ layers[1][0] + layers[1][1]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # Dynamic batch: one image gives the same row as in a batch of three.
    (one,) = session.run(["probabilities"], {"image": crops[1:2]})
    np.testing.assert_allclose(one[0], probs[1], atol=1e-5)
    # The ImageNet classifier is gone.
    names = {i.name for i in model.graph.initializer}
    assert not any("_fc" in n for n in names)


def test_tail_cut_is_a_block_boundary_and_holds_the_last_convolutions() -> None:
    backbone = load_backbone(default_model_dir(IMAGENET_MODEL))
    head_only = find_tail(backbone, 1)
    assert head_only is not None
    assert head_only.n_convs == 1  # the 1x1 head convolution
    assert [n.op for n in head_only.nodes] == ["Conv", "Clip", "ReduceMean"]
    last_block = find_tail(backbone, 4)
    assert last_block is not None
    # The last MBConv block (expand, depthwise, project) and the head convolution.
    assert last_block.n_convs == 4
    assert last_block.trainable[0].endswith("_expand_conv.weight")
    deeper = find_tail(backbone, 5)
    assert deeper is not None
    assert deeper.n_convs == 7  # the next cut back is a whole residual block further
    assert "Add" in [n.op for n in deeper.nodes]
    # Every constant a node reads is known (clip bounds, pooling axes, weights).
    produced = {o for n in deeper.nodes for o in n.outputs} | {deeper.cut}
    used = {i for n in deeper.nodes for i in n.inputs if i and i not in produced}
    assert used == deeper.constants.keys()


def test_rebuilt_tail_reproduces_embedding_and_tuned_weights_export(crops: np.ndarray) -> None:
    pytest.importorskip("torch", reason="the tail is rebuilt in PyTorch (optional)")
    from inference.training.torch_finetune import check_tail

    backbone = load_backbone(default_model_dir(IMAGENET_MODEL))
    tail = find_tail(backbone, 4)
    assert tail is not None
    session = backbone.session(extra_outputs=[tail.cut], intra_op_threads=2)
    emb, cut = session.run(["embedding", tail.cut], {"image": crops})
    assert check_tail(tail, cut, emb) < 1e-4

    name = tail.trainable[-2]  # the head convolution's weight
    halved = {name: tail.constants[name] * 0.5}
    layers = [(np.eye(1280, 3, dtype=np.float32), np.zeros(3, np.float32))]
    model = compose_model(backbone.onnx_path, layers, replace_initializers=halved)
    (emb_new,) = _session(model.SerializeToString()).run(["embedding"], {"image": crops})
    changed = replace(tail, constants={**tail.constants, **halved})
    assert check_tail(changed, cut, emb_new) < 1e-4
    assert not np.allclose(emb_new, emb)
