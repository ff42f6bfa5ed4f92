"""A trained model directory is served by the worker with no code change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from inference.training.trainer import TrainConfig, train
from schemas import codec
from tests.conftest import Topics, consume
from tests.events import listing

pytestmark = pytest.mark.integration

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_dataset"


def test_worker_serves_a_trained_model_and_never_reuses_another_models_cache(
    topics: Topics, worker_factory: Any, producer: KafkaProducer, tmp_path: Path
) -> None:
    model_dir = tmp_path / "tiny-grocery"
    result = train(
        TrainConfig(
            data=TINY, out=model_dir, val_fraction=0.2, augmentations=1, epochs=10,
            finetune="none", cache_dir=tmp_path / "features", intra_op_threads=2,
            progress=False, seed=3,
        )
    )  # fmt: skip
    photo = sorted((TINY / "Banana").glob("*.jpg"))[0].read_bytes()

    # The shipped model labels (and caches) the photo first.
    default = worker_factory().start()
    key, value = listing("by-default", photo, event_id="e-1")
    producer.send(topics.product_images, key=key, value=value)
    producer.flush()
    first = consume(topics.bootstrap, topics.product_labels, expect=1, timeout_s=60)
    default.stop()

    trained = worker_factory(VITRINE_MODEL_PATH=str(model_dir)).start()
    key, value = listing("by-trained", photo, event_id="e-2")
    producer.send(topics.product_images, key=key, value=value)
    producer.flush()
    both = consume(topics.bootstrap, topics.product_labels, expect=2, timeout_s=60)
    labels = {
        codec.decode_product_labelled(r.value).event_id: codec.decode_product_labelled(r.value)
        for r in both
    }
    trained.stop()

    assert codec.decode_product_labelled(first[0].value).model_name == "grocery-store"
    served = labels["e-2"]
    assert (served.model_name, served.model_version) == (
        result.manifest.name,
        result.manifest.version,
    )
    assert served.cached is False, "a result cached by another model version is a miss"
    assert served.labels[0].label == "Banana"
    assert served.category == result.manifest.categories[result.manifest.labels.index("Banana")]
