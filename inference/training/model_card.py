"""The model card ``vitrine build-model`` writes: what a model is and how well it does.

Every figure comes from the build's own record (the manifest's ``build`` object,
written by the step that measured it) or from the manifest's ``training`` and
``int8`` sections; nothing is typed in by hand. Written whole to a new file, or,
in a file that has them, between the ``<!-- model-card:begin -->`` and
``<!-- model-card:end -->`` markers, so prose around the card (``docs/MODEL.md``)
stays as written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from inference.serving.manifest import ModelManifest

__all__ = ["BEGIN", "END", "render_card", "write_card"]

BEGIN = "<!-- model-card:begin -->"
END = "<!-- model-card:end -->"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _num(value: Any, fmt: str = ".0f") -> str:
    return "n/a" if value is None else format(float(value), fmt)


def _rel(path: Path, card: Path) -> str:
    try:
        return Path(os.path.relpath(path, card.parent)).as_posix()
    except ValueError:  # another drive
        return path.as_posix()


def _what(manifest: ModelManifest, raw: dict[str, Any]) -> list[str]:
    kinds = len(set(manifest.coarse)) if manifest.coarse else manifest.num_classes
    categories = sorted(set(manifest.categories))
    base = (raw.get("source") or {}).get("base_model") or {}
    return [
        f"**{manifest.name}** `{manifest.version}`: {raw.get('description', '')}.",
        "",
        f"- {manifest.num_classes} products in {kinds} kinds and {len(categories)} "
        f"categories ({', '.join(categories)}).",
        f"- Base network: {base.get('name', 'n/a')} {base.get('version', '')}; input "
        f"{manifest.input_size[0]}x{manifest.input_size[1]} RGB.",
        f"- License: {raw.get('license', 'n/a')}.",
    ]


def _training(raw: dict[str, Any], steps: dict[str, Any]) -> list[str]:
    training = raw.get("training") or {}
    data = training.get("data") or {}
    sizes = data.get("split_sizes") or {}
    # The build's train step where it trained; the training record where it did not.
    train = steps.get("train") or {}
    seconds = train.get("seconds", (training.get("timings_s") or {}).get("total"))
    val = training.get("val_metrics") or {}
    top1 = train.get("val_top1", val.get("top1_accuracy"))
    kinds = train.get("val_kinds", val.get("coarse_accuracy"))
    return [
        "## Training",
        "",
        f"- Data: `{data.get('train', 'n/a')}` ({sizes.get('train', 'n/a')} photos), "
        f"validated on {data.get('val', 'n/a')} ({sizes.get('val', 'n/a')} photos); "
        f"data hash `{str(data.get('data_hash', 'n/a'))[:16]}`.",
        f"- Recipe: `{training.get('command', 'n/a')}`, seed {training.get('seed', 'n/a')}; "
        f"{_num(seconds)} s of training across every resumed run.",
        f"- Val at the end of training (FP32): top-1 {_pct(top1)}, kinds {_pct(kinds)}.",
    ]


def _served(steps: dict[str, Any]) -> list[str]:
    q = steps.get("quantize", {})
    if not q:
        return []
    kept = "kept" if q.get("kept") else "not kept (the worker serves FP32)"
    return [
        "## The graph the worker serves",
        "",
        f"INT8 graph {kept}: top-1 on val {_pct(q.get('top1_fp32'))} (FP32) against "
        f"{_pct(q.get('top1_int8'))} (INT8), kept only within "
        f"{_num(100 * float(q.get('max_top1_drop') or 0), '.1f')} point(s) of FP32; "
        f"{_pct(q.get('agreement'))} of photos get the same top-1; "
        f"{_num(q.get('speedup'), '.2f')}x the FP32 graph's speed on this machine.",
    ]


def _evaluation(steps: dict[str, Any], reports: Path, card: Path) -> list[str]:
    e = steps.get("evaluate", {})
    if not e:
        return []
    kept = e.get("accuracy_of_kept") or {}
    return [
        "## Evaluation (val, the served graph)",
        "",
        "| | |",
        "|---|---|",
        f"| photos | {e.get('images')} (`{e.get('data')}`) |",
        f"| graph | {e.get('precision', 'n/a')} |",
        f"| products, top-1 / top-5 | {_pct(e.get('top1'))} / {_pct(e.get('top5'))} |",
        f"| kinds, top-1 | {_pct(e.get('kinds'))} |",
        f"| macro F1 / ECE | {_pct(e.get('macro_f1'))} / {_num(e.get('ece'), '.3f')} |",
        f"| routed to review | {_pct(e.get('routed'))} |",
        f"| kept photos right: product / kind / category | {_pct(kept.get('product'))} / "
        f"{_pct(kept.get('kind'))} / {_pct(kept.get('category'))} |",
        f"| non-products routed | {_pct(e.get('non_products_routed'))} |",
        f"| engine alone, images/s | {_num(e.get('images_per_s'))} |",
        "",
        f"Full report: [{_rel(reports / 'evaluation' / 'report.md', card)}]"
        f"({_rel(reports / 'evaluation' / 'report.md', card)}). The held-back test "
        "split is scored independently, not here.",
    ]


def _review(steps: dict[str, Any], reports: Path, card: Path) -> list[str]:
    r = steps.get("review", {})
    if not r:
        return []
    t = r.get("thresholds") or {}
    kept = r.get("accuracy_of_kept") or {}
    kfold = r.get("kfold_val") or {}
    lines = [
        "## Review policy",
        "",
        f"Fitted on the {r.get('precision', 'n/a')} graph's outputs on val: "
        f"`kind_threshold` {_num(t.get('kind_threshold'), '.4f')}, `ood_threshold` "
        f"{_num(t.get('ood_threshold'), '.4f')}, `product_threshold` "
        f"{_num(t.get('product_threshold'), '.4f')}. On val: {_pct(r.get('routed'))} "
        f"routed; kept photos {_pct(kept.get('kind'))} right at the kind level and "
        f"{_pct(kept.get('category'))} at the category level; "
        f"{_pct(r.get('non_products_routed'))} of non-products routed; targets "
        f"{'met' if r.get('meets_targets') else 'not met'}.",
    ]
    if kfold.get("routed"):
        lines += ["", f"{kfold.get('folds')}-fold on val (fitted on the other folds): "
                  f"{_stat(kfold.get('routed'))} routed, kind level "
                  f"{_stat((kfold.get('accuracy_of_kept') or {}).get('kind'))} right."]  # fmt: skip
    report = _rel(reports / "review-policy" / "report.md", card)
    return [*lines, "", f"Full report: [{report}]({report})."]


def _stat(stat: Any) -> str:
    if not isinstance(stat, dict) or "mean" not in stat:
        return "n/a"
    return f"{100 * stat['mean']:.1f}% ± {100 * stat.get('std', 0.0):.1f}"


def _search(steps: dict[str, Any]) -> list[str]:
    s = steps.get("search", {})
    if not s:
        return []
    return [
        "## Visual search",
        "",
        f"{s.get('dims')}-dim descriptor in the worker's index ({s.get('index')}); val "
        f"photos as queries against train: precision@1 {_pct(s.get('precision_at_1'))}, "
        f"recall@10 {_pct(s.get('recall_at_10'))}.",
    ]


def _open_set(raw: dict[str, Any]) -> list[str]:
    o = (raw.get("training") or {}).get("open_set") or {}
    if not o:
        return []
    return [
        "## Products it was never shown",
        "",
        f"With {len(o.get('left_out', []) or [])} classes left out of training, their "
        f"photos are told from known ones with an AUROC of {_num(o.get('auroc_centroid'), '.2f')} "
        f"(centroid score), {_num(o.get('auroc_energy'), '.2f')} (energy) and "
        f"{_num(o.get('auroc_confidence'), '.2f')} (confidence).",
    ]


def _build(record: dict[str, Any]) -> list[str]:
    steps = record.get("steps", {})
    rows = [f"| {name} | {_num(s.get('seconds'))} | {s.get('finished_at', '')} |"
            for name, s in steps.items()]  # fmt: skip
    total = sum(float(s.get("seconds", 0.0)) for s in steps.values())
    return [
        "## Build",
        "",
        f"`{record.get('command', 'vitrine build-model')}`; each step's time across "
        "every run that resumed it:",
        "",
        "| step | seconds | finished |",
        "|---|---|---|",
        *rows,
        f"| total | {total:.0f} | |",
    ]


def render_card(
    manifest: ModelManifest, raw: dict[str, Any], record: dict[str, Any], *,
    reports: Path, card: Path,
) -> str:  # fmt: skip
    """The card's Markdown (no markers) from the manifest and the build record."""
    steps = record.get("steps", {})
    parts = [
        [f"# Model card: {manifest.name}", ""],
        _what(manifest, raw),
        _training(raw, steps),
        _served(steps),
        _evaluation(steps, reports, card),
        _review(steps, reports, card),
        _search(steps),
        _open_set(raw),
        _build(record),
    ]
    return "\n\n".join("\n".join(p) for p in parts if p).replace("\n\n\n", "\n\n") + "\n"


def write_card(path: Path, text: str) -> Path:
    """Write the card: between the markers where ``path`` has them, else the whole file.

    Raises ``ValueError`` for a page that is neither a card nor has the markers
    (another document is never overwritten).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if old and not old.startswith("# Model card") and BEGIN not in old:
        raise ValueError(
            f"{path} is not a model card and has no {BEGIN} ... {END} markers: "
            "add them where the card goes, or choose another --card file"
        )
    if BEGIN in old and END in old and old.index(BEGIN) < old.index(END):
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        # The card's own title is the document's: one level down inside another page.
        body = text.replace("\n## ", "\n### ").replace("# Model card", "## Model card", 1)
        text = f"{head}{BEGIN}\n{body}{END}{tail}"
    path.write_text(text, encoding="utf-8")
    return path
