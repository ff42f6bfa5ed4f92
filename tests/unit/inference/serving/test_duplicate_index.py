"""The integrity index: the same candidates as the band sets it replaced, compact, idempotent."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from inference.serving import duplicate_index
from inference.serving.duplicate_index import FingerprintIndex, StoredPrint
from inference.serving.duplicates import DuplicateRule, found_by_bands
from inference.serving.fingerprint import Fingerprint


def _sha(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def _print(seed: int) -> Fingerprint:
    rng = np.random.default_rng(seed)
    hashes = [int(h) for h in rng.integers(0, 2**64, size=27, dtype=np.uint64)]
    emb = rng.standard_normal(8).astype(np.float16)
    return Fingerprint(hashes[0], hashes[1], tuple(hashes[2:]), emb)


def _flip(h: int, *bits: int) -> int:
    for b in bits:
        h ^= 1 << b
    return h


def _catalogue(n: int) -> dict[str, Fingerprint]:
    """Random photos, every fifth a near copy (a few bits off one of an earlier photo's hashes)."""
    out: dict[str, Fingerprint] = {}
    for i in range(n):
        fp = _print(i)
        if i % 5 == 4:
            o = out[_sha(i - 3)]
            off = i % 7
            fp = Fingerprint(
                _flip(o.crops[i % 25], *range(0, 2 * off, 2)), fp.mirror, (), fp.embedding
            )
        out[_sha(i)] = fp
    return out


@pytest.mark.parametrize("n", [300, 2500])
def test_candidates_are_those_of_the_band_sets(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Every level of the band tables (buffer, small and big runs) answers as the band sets did."""
    monkeypatch.setattr(duplicate_index, "_BUFFER", 256)
    monkeypatch.setattr(duplicate_index, "_SMALL_RUN", 2048)
    monkeypatch.setattr(duplicate_index, "_PENDING", 1024)
    prints = _catalogue(n)
    index = FingerprintIndex()
    rule = DuplicateRule()
    shas = list(prints)
    for i, sha in enumerate(shas):
        index.add(sha, f"seller-{i % 13}", f"p-{i}", 1000 + i, StoredPrint(prints[sha], "v1"))
        if i % 997 == 0:  # lookups between additions, as the worker does
            index.near(prints[sha], max_bits=16, max_candidates=10**6, limit=10**6)
    for sha in shas[:: max(1, n // 25)] + shas[4::5][:15]:
        query = prints[sha]
        got = index.near(
            query,
            max_bits=rule.candidate_hamming,
            max_candidates=10**6,
            limit=10**6,
            exclude=index.row_of(sha),
        )
        want = {s for s, fp in prints.items() if s != sha and found_by_bands(query, fp, rule)}
        assert {index.sha_of(row) for row, _ in got} == want, sha
        bits = [b for _, b in got]
        assert bits == sorted(bits), "nearest first"
        for row, b in got:
            assert b == min(
                (q ^ h).bit_count()
                for q in (query.phash, query.mirror)
                for h in prints[index.sha_of(row)].indexed
                if (q ^ h).bit_count() <= rule.candidate_hamming
            )
    copies = [sha for i, sha in enumerate(shas) if i % 5 == 4]
    assert all(index.near(prints[c], max_bits=16, max_candidates=10**6, limit=5) for c in copies)


def test_prints_owners_and_idempotence() -> None:
    index = FingerprintIndex()
    fp = _print(1)
    sha = _sha(1)
    assert index.row_of(sha) is None
    assert index.owners(sha) == []
    assert index.print_of(sha) is None
    assert index.add(sha, "B", "b-1", 2000, None), "a photo with no print yet"
    assert index.print_of(sha) is None
    assert index.add(sha, "A", "a-1", 3000, StoredPrint(fp, "v1"))
    stored = index.print_of(sha)
    assert stored is not None
    assert stored.model_version == "v1"
    assert stored.fingerprint.indexed == fp.indexed
    assert stored.fingerprint.mirror == fp.mirror
    assert stored.fingerprint.embedding is not None
    assert np.array_equal(stored.fingerprint.embedding, fp.embedding)
    # The same records again (a re-read, a compaction duplicate): nothing changes.
    size = index.nbytes
    assert not index.add(sha, "A", "a-1", 3000, StoredPrint(fp, "v1"))
    assert not index.add(sha, "B", "b-2", 2500, StoredPrint(fp, "v1"))
    assert index.nbytes == size
    assert len(index) == 1
    assert index.listings == 2
    assert [(o.seller_id, o.product_id, o.listed_at_ms) for o in index.owners(sha)] == [
        ("B", "b-1", 2000),
        ("A", "a-1", 3000),
    ]
    # An earlier listing read late is the seller's first.
    assert index.add(sha, "A", "a-0", 1000, None)
    assert [(o.seller_id, o.product_id) for o in index.owners(sha)] == [("A", "a-0"), ("B", "b-1")]
    # A later listing's print of a newer model replaces the embedding, not the hashes.
    newer = Fingerprint(fp.phash, fp.mirror, fp.crops, np.ones(4, np.float16) / 2)
    assert index.add(sha, "C", "c-1", 4000, StoredPrint(newer, "v2"))
    stored = index.print_of(sha)
    assert stored is not None
    assert stored.model_version == "v2"
    assert stored.fingerprint.embedding is not None
    assert len(stored.fingerprint.embedding) == 4
    assert len(index.near(fp, max_bits=0, max_candidates=100, limit=10)) == 1, "hashes once"


def test_a_crowded_band_is_sampled_up_to_the_candidate_limit() -> None:
    index = FingerprintIndex()
    base = _print(7)
    for i in range(300):  # all share the top band of the query's hash
        h = (base.phash & ~0xFFFF_FFFF_FFFF) | (i * 0x1_0001_0001)
        index.add(_sha(i), "A", f"p{i}", i, StoredPrint(Fingerprint(h, 0, ()), "v1"))
    hits = index.near(base, max_bits=64, max_candidates=80, limit=1000)
    assert len(hits) == 10, "80 entries over 8 band keys: 10 of the band's 300"


def test_a_listing_takes_a_few_kilobytes() -> None:
    """Hashes, owners and a 1280-d float16 embedding: about 3.6 KB, growth slack included."""
    index = FingerprintIndex()
    rng = np.random.default_rng(0)
    n = 3000
    for i in range(n):
        hashes = [int(h) for h in rng.integers(0, 2**64, size=27, dtype=np.uint64)]
        emb = rng.standard_normal(1280).astype(np.float16)
        fp = Fingerprint(hashes[0], hashes[1], tuple(hashes[2:]), emb)
        index.add(_sha(i), f"seller-{i % 50}", f"sku-{i:08d}", i, StoredPrint(fp, "v1"))
    index.near(fp, max_bits=8, max_candidates=2000, limit=16)
    per_listing = index.nbytes / n
    assert 3000 < per_listing < 8000, per_listing
