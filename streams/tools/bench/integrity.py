"""``vitrine bench integrity``: what the integrity index costs a worker, per listing.

Synthetic listings (random 64-bit hashes for a photo, its mirror and 25 crops;
a unit-length 1280-d float16 embedding, as the shipped model's; a full set of
local features, 160 keypoints of 36 bytes; one seller in fifty) go through
the worker's own code: encoded as ``listing-fingerprints`` records and read
into an :class:`~streams.worker.integrity.IntegrityView` (:func:`rebuild_rate`,
what a worker does at start), then queried as the checks do (:func:`lookup_time`).
Random hashes spread evenly over the bands; real photos' hashes cluster more,
so real lookups read more entries (bounded by ``near_duplicate_max_candidates``).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.serving.duplicate_index import FingerprintIndex, Owner, StoredPrint
from inference.serving.fingerprint import Fingerprint
from inference.serving.keypoints import MAX_POINTS, LocalFeatures
from streams.worker.integrity import (
    IntegrityChecker,
    IntegrityConfig,
    IntegrityView,
    Listing,
    fingerprint_record,
)

__all__ = ["bench_integrity_command", "lookup_time", "rebuild_rate", "synthetic_listings"]

_DIMS = 1280
_CHUNK = 2000  # records per apply, as the follower's fetches


@dataclass(frozen=True)
class _Synthetic:
    listing: Listing
    print_: StoredPrint


def synthetic_listings(n: int, *, seed: int = 0, dims: int = _DIMS) -> Iterator[_Synthetic]:
    """``n`` listings of distinct photos with random fingerprints, in chunks of RNG draws."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n:
        k = min(_CHUNK, n - done)
        hashes = rng.integers(0, 2**64, size=(k, 27), dtype=np.uint64)
        embs = rng.standard_normal((k, dims)).astype(np.float32)
        embs = (embs / np.linalg.norm(embs, axis=1, keepdims=True)).astype(np.float16)
        shas = rng.integers(0, 256, size=(k, 32), dtype=np.uint8)
        xy = rng.integers(0, 256, size=(k, MAX_POINTS, 2), dtype=np.uint16)
        desc = rng.integers(0, 256, size=(k, MAX_POINTS, 32), dtype=np.uint8)
        for j in range(k):
            h = [int(x) for x in hashes[j]]
            feats = LocalFeatures(xy[j], desc[j])
            fp = Fingerprint(h[0], h[1], tuple(h[2:]), embs[j], feats)
            i = done + j
            listing = Listing(
                f"sku-{i:09d}",
                f"seller-{i % 50}",
                shas[j].tobytes().hex(),
                "bench-v1",
                fp,
                event_id=f"ev-{i}",
            )
            yield _Synthetic(listing, StoredPrint(fp, "bench-v1"))
        done += k


def _records(n: int, seed: int) -> Iterator[list[tuple[bytes, bytes]]]:
    """``n`` listing-fingerprints records (key, value), in fetch-sized chunks."""
    chunk: list[tuple[bytes, bytes]] = []
    for i, item in enumerate(synthetic_listings(n, seed=seed)):
        listing = item.listing
        owner = Owner(str(listing.seller_id), listing.product_id, 1_795_000_000_000 + i, i)
        chunk.append(fingerprint_record(listing, owner, item.print_))
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _read(view: IntegrityView, n: int, seed: int) -> tuple[float, int]:
    """Read ``n`` records into ``view``: seconds in ``apply`` (and the first lookup), bytes."""
    apply_s = 0.0
    record_bytes = 0
    for chunk in _records(n, seed):
        record_bytes += sum(len(k) + len(v) for k, v in chunk)
        started = time.perf_counter()
        view.apply(chunk)
        apply_s += time.perf_counter() - started
    # The first lookup bands the last additions, as a worker's first check would.
    started = time.perf_counter()
    view.index.near(Fingerprint(0, 0), max_bits=16, max_candidates=2000, limit=16)
    return apply_s + time.perf_counter() - started, record_bytes


def rebuild_rate(n: int, *, seed: int = 0, traced: int = 20_000) -> dict[str, Any]:
    """Build an index from ``n`` synthetic listing-fingerprints records, as a starting worker.

    Returns records/s of reading them in (decoding and indexing; not making the
    records, nor Kafka's fetching), the record's mean bytes (key and value),
    and the index's bytes per listing: its arrays' allocation at ``n``, and what
    ``tracemalloc`` saw the index keep, Python objects included, over a
    separate build of ``min(n, traced)`` records (tracing slows the build).
    """
    view = IntegrityView()
    seconds, record_bytes = _read(view, n, seed)
    small = min(n, traced)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    traced_view = IntegrityView()
    _read(traced_view, small, seed)
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {
        "listings": n,
        "records_per_s": round(n / seconds, 1),
        "seconds": round(seconds, 2),
        "record_bytes": round(record_bytes / n, 1),
        "index_bytes_per_listing": round(view.index.nbytes / n, 1),
        "traced_listings": small,
        "traced_bytes_per_listing": round(kept / small, 1),
    }


def lookup_time(n: int, *, queries: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Checks of new listings against an index of ``n`` photos: ms per photo (median, p99).

    Half the queries are near copies (2 bits off an indexed crop) of indexed
    photos, half new photos; each is checked and then indexed, as in the worker.
    The index is filled directly (not from records).
    """
    index = FingerprintIndex()
    originals: list[Fingerprint] = []
    step = max(1, n // queries)
    for i, item in enumerate(synthetic_listings(n, seed=seed)):
        listing = item.listing
        index.add(listing.image_sha256, str(listing.seller_id), listing.product_id, i, item.print_)
        if i % step == 0:
            originals.append(item.print_.fingerprint)
    rng = np.random.default_rng(seed + 1)
    probes = []
    for j, fp in enumerate(originals[: queries // 2]):
        crop = fp.crops[j % len(fp.crops)] ^ (1 << int(rng.integers(1, 64))) ^ 1
        probes.append(Fingerprint(crop, fp.mirror ^ 1, (), fp.embedding))
    probes += [f.print_.fingerprint for f in synthetic_listings(queries // 2, seed=seed + 2)]
    checker = IntegrityChecker(IntegrityConfig(), IntegrityView(index))

    async def run() -> tuple[list[float], int]:
        times, flagged = [], 0
        for j, fp in enumerate(probes):
            sha = hashlib.sha256(f"q-{j}".encode()).hexdigest()
            listing = Listing(f"q-{j}", "seller-q", sha, "bench-v1", fp)
            started = time.perf_counter()
            [got] = await checker.check([listing])
            times.append(time.perf_counter() - started)
            flagged += got.duplicate_of is not None
        return times, flagged

    times, flagged = asyncio.run(run())
    ms = np.array(times[1:]) * 1000  # the first bands the whole index
    return {
        "indexed": n,
        "queries": len(probes),
        "flagged": flagged,
        "ms_median": round(float(np.median(ms)), 3),
        "ms_p99": round(float(np.percentile(ms, 99)), 3),
        "index_bytes_per_listing": round(index.nbytes / n, 1),
    }


def bench_integrity_command(*, as_json: bool, n_listings: int) -> int:
    """Rebuild rate and bytes at up to 100k listings; lookups at 100k and ``n_listings``."""
    report: dict[str, Any] = {
        "rebuild": rebuild_rate(min(n_listings, 100_000)),
        "lookup": [lookup_time(n) for n in sorted({min(100_000, n_listings), n_listings})],
    }
    if as_json:
        print(json.dumps(report))
        return 0
    r = report["rebuild"]
    print(
        f"rebuild: {r['listings']} records at {r['records_per_s']:.0f}/s; record "
        f"{r['record_bytes']:.0f} B; index {r['index_bytes_per_listing']:.0f} B/listing "
        f"(tracemalloc over {r['traced_listings']}: {r['traced_bytes_per_listing']:.0f})"
    )
    for lk in report["lookup"]:
        print(
            f"lookup at {lk['indexed']} photos: {lk['ms_median']:.3f} ms median, "
            f"{lk['ms_p99']:.3f} ms p99 per photo ({lk['flagged']}/{lk['queries']} flagged)"
        )
    return 0
