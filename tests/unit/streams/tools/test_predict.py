"""``vitrine predict`` and the engine it builds from the settings (``build_engine``)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from inference.samples import samples
from inference.serving.engine import Engine
from streams.settings import ModelSettings, Settings
from streams.tools.predict import run_predict
from streams.worker.model import build_engine, image_limits

CORPUS = Path(__file__).resolve().parents[3] / "fixtures" / "bad_images"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    model = ModelSettings(execution_providers="cpu", intra_op_threads=2, max_batch_size=4)
    return Settings(model=model, state_dir=tmp_path)


def test_build_engine_follows_settings(settings: Settings) -> None:
    engine = build_engine(settings, warmup=False)
    assert isinstance(engine, Engine)
    assert (engine.provider, engine.max_batch_size, engine.top_k) == ("cpu", 4, 5)
    assert engine.model_name == "grocery-store"
    limits = image_limits(settings)
    assert (limits.max_bytes, limits.max_pixels) == (
        settings.images.max_image_bytes,
        settings.images.max_image_pixels,
    )


def test_predict_json_lines(settings: Settings, tmp_path: Path) -> None:
    paths = [samples()[0].path, CORPUS / "document.pdf", tmp_path / "missing.jpg"]
    paths += [s.path for s in samples()[1:5]]  # more than one batch of 4
    out = io.StringIO()
    code = run_predict(paths, as_json=True, top_k=3, model_dir=None, settings=settings, out=out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 1  # some images failed
    assert [r["path"] for r in records] == [str(p) for p in paths]
    assert records[0]["labels"][0][0] == "Banana"  # [label, score], as the image cache has it
    assert len(records[0]["labels"]) == 3
    assert records[0]["category"] == "produce"
    assert records[1]["error"]["code"] == "image.unsupported_format"
    assert records[2]["error"]["code"] == "file.not_found"
    assert all("labels" in r for r in records[3:])


def test_predict_table(settings: Settings) -> None:
    out = io.StringIO()
    code = run_predict(
        [samples()[0].path], as_json=False, top_k=2, model_dir=None, settings=settings, out=out
    )
    text = out.getvalue()
    assert code == 0
    assert "Banana" in text
    assert "category: produce" in text


def test_predict_with_unusable_model(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_predict(
        [samples()[0].path], as_json=True, top_k=5, model_dir=tmp_path / "none", settings=settings
    )
    assert code == 2
    assert "model.not_found" in capsys.readouterr().err
