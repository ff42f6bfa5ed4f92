"""``vitrine bench console``: how fast the review queue's page is with a full queue.

The console's own app (:func:`streams.console.web.build_app`) serves on a free
port of this machine with its queue filled in process with N flagged items
(10,000 by default: synthetic records spread over flags, categories and 200
sellers); a signed-in client then GETs the queue page over real HTTP, the
first page, a deep page and each filter, and the command reports the p50 and
p95 of each in milliseconds. Kafka is not needed: the page reads only the
queue, whichever way it was filled. Goal: p95 under 200 ms.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from schemas.records import SCHEMA_VERSION, DuplicateOf, Label, ProductLabelled, Timings
from streams.console.queue import Ref
from streams.console.web import Console, build_app
from streams.settings import ConsoleSettings, Settings

__all__ = ["bench_console_command", "fill", "measure"]

_FLAGS = (("low_confidence",), ("duplicate_image",), ("category_mismatch",), ("unknown_product",))
_CATEGORIES = ("produce", "dairy", "beverages")
_SECRET = "bench-console-secret"


def _record(i: int, t0: datetime) -> ProductLabelled:
    flags = _FLAGS[i % len(_FLAGS)]
    sha = f"{i:064x}"
    dup = None
    if "duplicate_image" in flags:
        dup = DuplicateOf(
            product_id=f"orig-{i}", seller_id="s-orig", image_sha256=sha, match="exact", hamming=0
        )
    return ProductLabelled(
        schema_version=SCHEMA_VERSION,
        event_id=f"bench-{i}",
        occurred_at=t0,
        product_id=f"bench-{i}",
        labels=tuple(Label(label=f"label-{k}", score=0.5 / (k + 1)) for k in range(5)),
        category=_CATEGORIES[i % len(_CATEGORIES)],
        category_score=0.5,
        model_name="bench",
        model_version="1",
        image_sha256=sha,
        flags=flags,
        timings=Timings(decode_ms=0, inference_ms=0, end_to_end_ms=0),
        labelled_at=t0 + timedelta(milliseconds=i),
        seller_id=f"seller-{i % 200}",
        title=f"Bench listing {i}",
        declared_category="dairy" if "category_mismatch" in flags else None,
        duplicate_of=dup,
    )


def fill(console: Console, n: int) -> None:
    """Queue ``n`` synthetic flagged items, as the feed would."""
    t0 = datetime.now(UTC)
    for i in range(n):
        console.queue.add(_record(i, t0), Ref("product-review", i % 4, i // 4))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _sign_in(http: aiohttp.ClientSession, url: str) -> None:
    async with http.get(f"{url}/login") as r:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
    assert csrf is not None
    form = {"csrf": csrf.group(1), "reviewer": "bench", "secret": _SECRET}
    async with http.post(f"{url}/login", data=form, allow_redirects=False) as r:
        assert r.status == 303, r.status


async def measure(n_items: int, requests: int) -> dict[str, Any]:
    """Serve a console holding ``n_items``; time ``requests`` GETs of each kind of page."""
    port = _free_port()
    settings = Settings(console=ConsoleSettings(port=port, max_items=max(n_items, 1)))
    console = Console(settings, _SECRET)
    started = time.perf_counter()
    fill(console, n_items)
    fill_s = time.perf_counter() - started
    runner = web.AppRunner(build_app(console), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    last = max(1, -(-n_items // settings.console.page_size))
    pages = {
        "first page": "/",
        "last page": f"/?page={last}",
        "flag filter": "/?flag=duplicate_image",
        "category filter": "/?category=dairy&page=3",
        "seller filter": "/?seller=seller-7",
    }
    out: dict[str, Any] = {"items": n_items, "fill_s": round(fill_s, 3), "pages": {}}
    try:
        # unsafe: keep cookies of an IP address host (127.0.0.1).
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _sign_in(http, url)
            for name, path in pages.items():
                times = []
                for _ in range(requests + 2):
                    t = time.perf_counter()
                    async with http.get(url + path) as r:
                        body = await r.read()
                        assert r.status == 200, r.status
                    times.append(time.perf_counter() - t)
                ms = np.array(times[2:]) * 1000  # the first two warm the templates
                out["pages"][name] = {
                    "path": path,
                    "p50_ms": round(float(np.percentile(ms, 50)), 2),
                    "p95_ms": round(float(np.percentile(ms, 95)), 2),
                    "bytes": len(body),
                }
    finally:
        await runner.cleanup()
    return out


def bench_console_command(
    *, as_json: bool, n_items: int = 10_000, requests: int = 100, out_dir: Path | None = None
) -> int:
    """Measure, print, and write ``<out_dir>/console.json``; 1 if a p95 is 200 ms or more."""
    report = asyncio.run(measure(n_items, requests))
    out_dir = out_dir or Path("out/bench")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "console.json").write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        print(json.dumps(report))
    else:
        print(f"console queue page, {report['items']} items, {requests} GETs each:")
        for name, r in report["pages"].items():
            print(f"  {name:16} p50 {r['p50_ms']:7.2f} ms  p95 {r['p95_ms']:7.2f} ms  {r['path']}")
        print(f"written to {out_dir / 'console.json'}")
    return 0 if all(r["p95_ms"] < 200 for r in report["pages"].values()) else 1
