"""The full recipe's pieces that need no PyTorch: its checkpoint key and the kind score."""

from __future__ import annotations

import numpy as np

from inference.training.full_finetune import FullFinetuneConfig, _kind_accuracy


def test_a_kind_weight_of_zero_keeps_the_key_of_older_checkpoints() -> None:
    # The key a default run had before kind_weight existed: its checkpoints still resume.
    assert FullFinetuneConfig().key() == "a02826a1dd7ad266"
    assert FullFinetuneConfig(kind_weight=0.0).key() == FullFinetuneConfig().key()
    assert FullFinetuneConfig(kind_weight=1.0).key() != FullFinetuneConfig().key()


def test_kind_accuracy_sums_the_products_of_each_kind() -> None:
    kinds = np.array([0, 0, 1])  # two apples and a banana
    # Top-1 product is the banana (0.4), but the apples together hold 0.6.
    logits = np.log(np.array([[0.3, 0.3, 0.4], [0.1, 0.1, 0.8]]))
    labels = np.array([0, 2])  # an apple, a banana
    assert _kind_accuracy(logits, labels, kinds) == 1.0
    assert _kind_accuracy(logits, np.array([2, 0]), kinds) == 0.0
