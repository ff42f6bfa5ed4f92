"""A folder ``vitrine build-model`` rebuilt is a drop-in replacement for the shipped one.

The build runs every step on the tiny fixture data set (split into train and
val folders): train, INT8, search projection, review thresholds, evaluation, card.
Then a worker started with ``VITRINE_MODEL_PATH`` pointing at the folder serves its
INT8 graph on real Kafka and Redis: listings are labelled by the new model with
its own classes, descriptors of the fitted size go to product-embeddings, and
``POST /similar`` finds a listed photo's near copy. A rerun of the build does
nothing it already did.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from inference.serving.manifest import ModelManifest
from inference.training.build import STEPS
from inference.training.quantize import QuantizeConfig
from schemas import codec
from streams.tools.build_model import build_model_command
from tests.conftest import Topics, consume
from tests.events import listing
from tests.integration.test_search import http, near_copy, wait_indexed

pytestmark = pytest.mark.integration

TINY = Path(__file__).parents[1] / "fixtures" / "tiny_dataset"
CLASSES = ("Banana", "Granny-Smith", "Oatly-Oat-Milk", "Pink-Lady")
DIMS = 16  # the search descriptor (at most the number of training photos)


def _split(root: Path) -> tuple[Path, Path]:
    """The tiny data set as train (4 photos a class) and val (2 a class) folders."""
    for split in ("train", "val"):
        for cls in CLASSES:
            files = sorted((TINY / cls).glob("*.jpg"))
            (root / split / cls).mkdir(parents=True)
            for f in files[:4] if split == "train" else files[4:]:
                shutil.copy(f, root / split / cls / f.name)
        shutil.copy(TINY / "classes.csv", root / split / "classes.csv")
    return root / "train", root / "val"


def _build(train: Path, val: Path, out: Path) -> int:
    return build_model_command(
        train,
        val,
        out,
        train_options={"name": "tiny-build", "epochs": 10, "head": "linear", "augmentations": 1},
        build_options={
            # min/max calibration, one draw, and INT8 kept whatever its top-1 on 8 photos.
            "quantize": QuantizeConfig(
                calibration_images=16,
                method="minmax",
                tries=1,
                throughput_images=8,
                max_top1_drop=1.0,
            ),
            "folds": 2,
            "throughput_images": 16,
            "search_dims": DIMS,
        },
        progress=False,
        command="vitrine build-model (test)",
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("build")
    train, val = _split(root / "data")
    assert _build(train, val, root / "model") == 0
    return root / "model", val


def test_the_build_writes_everything_the_worker_serves(
    built: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, val = built
    manifest = ModelManifest.load(model)
    assert manifest.int8 is not None  # the graph the worker serves on CPUs
    assert manifest.projection_path is not None
    assert manifest.projection_path.is_file()
    raw = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    record = raw["build"]
    assert list(record["steps"]) == list(STEPS)
    assert {s["model_sha256"] for s in record["steps"].values()} == {manifest.sha256}
    assert record["total_s"] == pytest.approx(
        sum(s["seconds"] for s in record["steps"].values()), abs=0.2
    )
    # The review thresholds were fitted on the INT8 graph's outputs, by this build.
    assert record["steps"]["review"]["precision"] == "int8"
    assert raw["review"]["fitted"].startswith("vitrine build-model (test) (int8")
    assert manifest.kind_threshold == record["steps"]["review"]["thresholds"]["kind_threshold"]
    assert record["steps"]["evaluate"]["images"] == 8
    card = (model / "MODEL_CARD.md").read_text(encoding="utf-8")
    top1 = record["steps"]["evaluate"]["top1"]
    assert f"| products, top-1 / top-5 | {100 * top1:.1f}%" in card
    assert (model / "reports" / "evaluation" / "report.md").is_file()
    assert (model / "reports" / "review-policy" / "report.md").is_file()
    # A rerun resumes: nothing left to do but the card.
    capsys.readouterr()
    train = val.parent / "train"
    assert _build(train, val, model) == 0
    out = capsys.readouterr().out
    assert "ran card; already done: train, quantize, search, review, evaluate" in out


def test_a_worker_serves_the_rebuilt_folder(
    built: tuple[Path, Path], topics: Topics, worker_factory: Any, producer: KafkaProducer
) -> None:
    model, val = built
    manifest = ModelManifest.load(model)
    worker = worker_factory(VITRINE_MODEL_PATH=str(model)).start()
    started = worker.tail(400)
    assert "model=tiny-build" in started
    assert "precision=int8" in started
    photos = {cls: sorted((val / cls).glob("*.jpg"))[0].read_bytes() for cls in CLASSES}
    pid = {cls: f"build-{topics.suffix}-{cls}" for cls in CLASSES}
    for cls in CLASSES:
        key, value = listing(pid[cls], photos[cls])
        producer.send(topics.product_images, key=key, value=value)
    producer.flush()
    records: list[Any] = consume(topics.bootstrap, topics.product_labels, expect=len(CLASSES))
    labelled = [codec.decode_product_labelled(r.value) for r in records]
    assert {e.product_id for e in labelled} == set(pid.values()), worker.tail()
    assert {(e.model_name, e.model_version) for e in labelled} == {("tiny-build", manifest.version)}
    assert {lb.label for e in labelled for lb in e.labels} <= set(CLASSES)
    embeddings: list[Any] = consume(
        topics.bootstrap, topics.product_embeddings, expect=len(CLASSES)
    )
    assert {codec.decode_product_embedding(r.value).dims for r in embeddings} == {DIMS}
    wait_indexed(worker.web_port, pid["Banana"], len(CLASSES))
    found = http(worker.web_port, "/similar?k=2", data=near_copy(photos["Banana"]))
    assert found["items"][0]["product_id"] == pid["Banana"], found
    assert worker.stop() == 0, worker.tail()
