"""The in-process index of listed photos that the duplicate checks query.

It holds, for every listed photo (by sha256), its fingerprint and each seller's
first listing of it, and finds the photos whose indexed hashes are near a query's
by multi-index hashing (:func:`~inference.serving.duplicates.lookup_bands`). The
layout is columnar numpy, not Python objects per hash, so that a million photos
fit a worker; additions go to a small buffer merged into sorted runs
(:class:`_SortedMultiMap`). The index only grows. Pure numpy: the worker feeds it
from Kafka (:mod:`streams.worker.integrity`), a benchmark from synthetic prints.
Layout and sizes: docs/INTEGRITY.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.serving.duplicates import BANDS, lookup_bands
from inference.serving.fingerprint import HASH_BITS, Fingerprint
from inference.serving.keypoints import LocalFeatures

__all__ = ["FingerprintIndex", "Owner", "StoredPrint"]

logger = logging.getLogger(__name__)

#: Unsorted additions scanned linearly before they are sorted into the small run.
_BUFFER = 1 << 14
#: The small sorted run is merged into the big one past this size, or 1/8 of it.
_SMALL_RUN = 1 << 16
#: Hashes added without a lookup since are put in the bands together, up to this many.
_PENDING = 1 << 18
_BAND_BITS = HASH_BITS // BANDS
_BAND_MASK = np.uint64((1 << _BAND_BITS) - 1)
#: Dimensions of the random projection of embeddings that the nearest-neighbour
#: query scans (float32: 256 bytes a photo); its best are re-ranked by exact cosine.
_PROJECTED = 64
_RERANK = 4


def _projection(dim: int) -> npt.NDArray[np.float32]:
    """A fixed random Gaussian projection of ``dim``-d embeddings (same in every worker)."""
    rng = np.random.default_rng(dim)
    matrix: npt.NDArray[np.float32] = (
        rng.standard_normal((dim, _PROJECTED)) / np.sqrt(_PROJECTED)
    ).astype(np.float32)
    return matrix


class _Column:
    """A growable 1-d numpy array (amortised appends, 1.5x growth)."""

    __slots__ = ("_data", "n")

    def __init__(self, dtype: Any, capacity: int = 1024) -> None:
        self._data: npt.NDArray[Any] = np.zeros(capacity, dtype=dtype)
        self.n = 0

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        if need > len(self._data):
            grown = np.zeros(max(need, len(self._data) * 3 // 2), dtype=self._data.dtype)
            grown[: self.n] = self._data[: self.n]
            self._data = grown

    def append(self, value: Any) -> int:
        """Append one value; return its position."""
        self._reserve(1)
        self._data[self.n] = value
        self.n += 1
        return self.n - 1

    def extend(self, values: npt.ArrayLike) -> int:
        """Append values; return the position of the first."""
        arr = np.asarray(values, dtype=self._data.dtype).reshape(-1)
        self._reserve(len(arr))
        start = self.n
        self._data[start : start + len(arr)] = arr
        self.n += len(arr)
        return start

    @property
    def view(self) -> npt.NDArray[Any]:
        """The used part (a view: valid until the next append)."""
        return self._data[: self.n]

    @property
    def data(self) -> npt.NDArray[Any]:
        """The whole buffer (for indexing by known positions)."""
        return self._data

    @property
    def nbytes(self) -> int:
        """Bytes allocated."""
        return int(self._data.nbytes)


def _merge(
    keys: npt.NDArray[Any], vals: npt.NDArray[np.int32], more_keys: Any, more_vals: Any
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int32]]:
    """Two runs sorted by key merged into one (ties: ``keys``' entries first)."""
    at = np.searchsorted(keys, more_keys, side="right")
    return np.insert(keys, at, more_keys), np.insert(vals, at, more_vals)


class _SortedMultiMap:
    """Sorted keys -> int32 values, many values per key, append-only.

    A big sorted run, a small sorted run (at most ``max(_SMALL_RUN, big / 8)``)
    and an unsorted buffer (at most :data:`_BUFFER`). Values of one key come
    back in insertion order within each level.
    """

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        empty_keys = np.zeros(0, self.dtype)
        empty_vals = np.zeros(0, np.int32)
        self._big = (empty_keys, empty_vals)
        self._small = (empty_keys, empty_vals)
        self._buf_keys = _Column(self.dtype, _BUFFER)
        self._buf_vals = _Column(np.int32, _BUFFER)

    def __len__(self) -> int:
        return len(self._big[0]) + len(self._small[0]) + self._buf_keys.n

    @property
    def nbytes(self) -> int:
        """Bytes allocated."""
        runs = sum(a.nbytes for run in (self._big, self._small) for a in run)
        return int(runs) + self._buf_keys.nbytes + self._buf_vals.nbytes

    def add(self, keys: npt.ArrayLike, values: npt.ArrayLike) -> None:
        """Add ``values[i]`` under ``keys[i]``."""
        k = np.asarray(keys, dtype=self.dtype).reshape(-1)
        v = np.asarray(values, dtype=np.int32).reshape(-1)
        if self._buf_keys.n + len(k) <= _BUFFER:
            self._buf_keys.extend(k)
            self._buf_vals.extend(v)
            return
        # A bulk add (or a full buffer): sort it with the buffer into the small run.
        k = np.concatenate([self._buf_keys.view, k])
        v = np.concatenate([self._buf_vals.view, v])
        self._buf_keys.n = self._buf_vals.n = 0
        order = np.argsort(k, kind="stable")
        self._small = _merge(*self._small, k[order], v[order])
        if len(self._small[0]) > max(_SMALL_RUN, len(self._big[0]) // 8):
            self._big = _merge(*self._big, *self._small)
            self._small = (np.zeros(0, self.dtype), np.zeros(0, np.int32))

    def get(self, key: int) -> npt.NDArray[np.int32]:
        """Every value added under ``key``."""
        parts = []
        # Of the keys' own dtype: a Python int makes searchsorted cast the whole run.
        k = self.dtype.type(key)
        for keys, vals in (self._big, self._small):
            lo, hi = int(np.searchsorted(keys, k, "left")), int(np.searchsorted(keys, k, "right"))
            if hi > lo:
                parts.append(vals[lo:hi])
        if self._buf_keys.n:
            hit = self._buf_keys.view == k
            if hit.any():
                parts.append(self._buf_vals.view[hit])
        if not parts:
            return np.zeros(0, np.int32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


@dataclass(frozen=True, slots=True)
class Owner:
    """A seller's first listing of a photo."""

    seller_id: str
    product_id: str
    listed_at_ms: int
    #: When the index learnt of it (ties of ``listed_at_ms`` are broken by it).
    seq: int

    @property
    def order(self) -> tuple[int, int]:
        """Which listing came first: earlier time, then earlier in the index."""
        return (self.listed_at_ms, self.seq)


@dataclass(frozen=True, slots=True)
class StoredPrint:
    """A photo's fingerprint as indexed, with the model version of its embedding."""

    fingerprint: Fingerprint
    model_version: str


def _sha_bytes(sha: str) -> bytes:
    raw = bytes.fromhex(sha)
    if len(raw) != 32:
        raise ValueError(f"not a sha256: {sha!r}")
    return raw


class FingerprintIndex:
    """Listed photos: fingerprints, first listing per seller, and the band index."""

    def __init__(self, *, seed: int = 0) -> None:
        # Per photo (row).
        self._sha = _Column(np.uint8, 32 * 1024)
        self._by_sha = _SortedMultiMap(np.uint64)  # first 8 bytes of the sha -> row
        self._mirror = _Column(np.uint64)
        self._hash_start = _Column(np.int64)
        self._hash_count = _Column(np.uint8)
        self._emb_start = _Column(np.int64)
        self._emb_len = _Column(np.int16)  # -1: no print at all, 0: hashes only
        self._version = _Column(np.int16)
        self._print_ms = _Column(np.int64)
        self._first_owner = _Column(np.int32)
        self._feat_start = _Column(np.int64)
        self._feat_count = _Column(np.int16)
        self._feat = _Column(np.uint8, 1 << 16)  # 36 bytes a keypoint (LocalFeatures)
        # Per embedding (a photo's latest): its projection, row and model version.
        self._proj = _Column(np.float32, 1 << 14)
        self._proj_row = _Column(np.int32)
        self._emb_proj = _Column(np.int32)  # per photo: its live slot, -1 none
        self._proj_dim = 0
        self._proj_matrix: npt.NDArray[np.float32] | None = None
        # Per indexed hash (entry).
        self._hashes = _Column(np.uint64, 16 * 1024)
        self._entry_row = _Column(np.int32, 16 * 1024)
        self._bands = [_SortedMultiMap(np.uint16) for _ in range(BANDS)]
        self._emb = _Column(np.float16, 1 << 16)
        # Per (photo, seller).
        self._own_next = _Column(np.int32)
        self._own_seller = _Column(np.int32)
        self._own_ms = _Column(np.int64)
        self._own_text_start = _Column(np.int64)
        self._own_text_len = _Column(np.int16)
        self._text = _Column(np.uint8, 1 << 16)
        # Few: one entry per seller and per model version.
        self._seller_ids: dict[str, int] = {}
        self._sellers: list[str] = []
        self._version_ids: dict[str, int] = {}
        self._versions: list[str] = []
        self._rng = np.random.default_rng(seed)
        #: Entries from here on are not in the bands yet (added in bulk, before a lookup).
        self._banded = 0

    def __len__(self) -> int:
        """Photos indexed."""
        return self._mirror.n

    @property
    def listings(self) -> int:
        """(photo, seller) first listings indexed."""
        return self._own_ms.n

    @property
    def nbytes(self) -> int:
        """Bytes allocated by the arrays (the dictionaries of sellers and versions aside)."""
        columns = [v for v in vars(self).values() if isinstance(v, _Column | _SortedMultiMap)]
        return sum(c.nbytes for c in columns) + sum(b.nbytes for b in self._bands)

    # --- reading ----------------------------------------------------------------
    def row_of(self, sha: str) -> int | None:
        """The row of photo ``sha``, or None when it is not indexed."""
        raw = _sha_bytes(sha)
        shas = self._sha.data
        for row in self._by_sha.get(int.from_bytes(raw[:8], "little")):
            if shas[32 * row : 32 * row + 32].tobytes() == raw:
                return int(row)
        return None

    def sha_of(self, row: int) -> str:
        """The sha256 of photo ``row``."""
        return bytes(self._sha.data[32 * row : 32 * row + 32]).hex()

    def owners(self, sha: str) -> list[Owner]:
        """Each seller's first listing of photo ``sha``, earliest first."""
        row = self.row_of(sha)
        return [] if row is None else self.owners_of(row)

    def owners_of(self, row: int) -> list[Owner]:
        """Each seller's first listing of photo ``row``, earliest first."""
        out = []
        own = int(self._first_owner.data[row])
        while own >= 0:
            out.append(self._owner(own))
            own = int(self._own_next.data[own])
        return sorted(out, key=lambda o: o.order)

    def _owner(self, own: int) -> Owner:
        start = int(self._own_text_start.data[own])
        text = self._text.data[start : start + int(self._own_text_len.data[own])]
        return Owner(
            self._sellers[int(self._own_seller.data[own])],
            bytes(text).decode("utf-8"),
            int(self._own_ms.data[own]),
            own,
        )

    def print_of(self, sha: str) -> StoredPrint | None:
        """Photo ``sha``'s fingerprint and model version, or None without one."""
        row = self.row_of(sha)
        return None if row is None else self.print_at(row)

    def print_at(self, row: int) -> StoredPrint | None:
        """Photo ``row``'s fingerprint and model version, or None without one."""
        emb_len = int(self._emb_len.data[row])
        if emb_len < 0:
            return None
        start, count = int(self._hash_start.data[row]), int(self._hash_count.data[row])
        hashes = [int(h) for h in self._hashes.data[start : start + count]]
        emb = None
        if emb_len:
            at = int(self._emb_start.data[row])
            emb = self._emb.data[at : at + emb_len].copy()
        features = None
        count = int(self._feat_count.data[row])
        if count > 0:
            at = int(self._feat_start.data[row])
            features = LocalFeatures.from_bytes(self._feat.data[at : at + 36 * count].tobytes())
        fp = Fingerprint(hashes[0], int(self._mirror.data[row]), tuple(hashes[1:]), emb, features)
        return StoredPrint(fp, self._versions[int(self._version.data[row])])

    def similar(
        self, photo: Fingerprint, *, model_version: str, limit: int, exclude: int | None = None
    ) -> list[tuple[int, float]]:
        """The ``limit`` photos whose embeddings (of ``model_version``) are nearest ``photo``'s.

        ``(row, cosine)``, most similar first, without row ``exclude``. A brute-force
        scan of the embeddings' random projections (:data:`_PROJECTED` dimensions),
        whose best :data:`_RERANK` x ``limit`` are re-ranked by exact cosine: what
        finds a candidate that a crop or rotation moved far in hash space.
        """
        emb = photo.embedding
        if emb is None or self._proj_matrix is None or len(emb) != self._proj_dim or limit < 1:
            return []
        version = self._version_ids.get(model_version)
        rows = self._proj_row.view
        if version is None or not len(rows):
            return []
        query = np.asarray(emb, np.float32) @ self._proj_matrix
        scores = self._proj.view.reshape(-1, _PROJECTED) @ query
        # A row's stale slot (replaced by a newer embedding) or another model's is out.
        live = (self._emb_proj.data[rows] == np.arange(len(rows))) & (
            self._version.data[rows] == version
        )
        if exclude is not None:
            live &= rows != exclude
        scores = np.where(live, scores, -np.inf)
        take = min(len(scores), _RERANK * limit)
        best = np.argpartition(-scores, take - 1)[:take]
        best = best[np.isfinite(scores[best])]
        out = []
        q = np.asarray(emb, np.float32)
        for slot in best:
            row = int(rows[slot])
            at, n = int(self._emb_start.data[row]), int(self._emb_len.data[row])
            cos = float(np.dot(self._emb.data[at : at + n].astype(np.float32), q))
            out.append((row, cos))
        out.sort(key=lambda rc: -rc[1])
        return out[:limit]

    def near(
        self,
        photo: Fingerprint,
        *,
        max_bits: int,
        max_candidates: int,
        limit: int,
        exclude: int | None = None,
    ) -> list[tuple[int, int]]:
        """Photos with an indexed hash within ``max_bits`` of ``photo``'s or its mirror's.

        Those found through the bands of ``photo``'s hash and its mirror's
        (:func:`~inference.serving.duplicates.lookup_bands`), reading at most
        ``max_candidates`` entries in all (a random sample of a band value's
        entries past its share); ``(row, bits)``, nearest first, at most
        ``limit``, without row ``exclude``.
        """
        self._band_pending()
        keys = sorted(lookup_bands(photo))
        per_key = max(1, max_candidates // len(keys))
        found = []
        for band, value in keys:
            ids = self._bands[band].get(value)
            if len(ids) > per_key:
                ids = self._rng.choice(ids, per_key, replace=False)
            found.append(ids)
        ids = np.concatenate(found)
        if not len(ids):
            return []
        hashes = self._hashes.data[ids]
        rows = self._entry_row.data[ids]
        bits = np.minimum(
            np.bitwise_count(hashes ^ np.uint64(photo.phash)),
            np.bitwise_count(hashes ^ np.uint64(photo.mirror)),
        )
        keep = bits <= max_bits
        if exclude is not None:
            keep &= rows != exclude
        rows, bits = rows[keep], bits[keep]
        order = np.lexsort((rows, bits))  # by bits, then row (older first)
        rows, bits = rows[order], bits[order]
        _, first = np.unique(rows, return_index=True)  # each row at its nearest
        first.sort()
        return [(int(rows[i]), int(bits[i])) for i in first[:limit]]

    # --- writing ----------------------------------------------------------------
    def add(
        self,
        sha: str,
        seller_id: str,
        product_id: str,
        listed_at_ms: int,
        print_: StoredPrint | None,
    ) -> bool:
        """Index a seller's listing of photo ``sha``; True when the index changed.

        Idempotent: a seller's earliest listing of a photo is kept (a later one
        changes nothing), and a photo's hashes are indexed once. A print gives
        the photo its embedding when it had none, or when it is of a later
        listing than the one that gave it (a newer model's, after an upgrade).
        """
        row = self.row_of(sha)
        changed = False
        if row is None:
            row = self._new_row(sha)
            changed = True
        if print_ is not None:
            changed |= self._set_print(row, print_, listed_at_ms)
        changed |= self._set_owner(row, seller_id, product_id, listed_at_ms)
        return changed

    def _new_row(self, sha: str) -> int:
        raw = _sha_bytes(sha)
        row = self._mirror.append(0)
        self._sha.extend(np.frombuffer(raw, np.uint8))
        self._by_sha.add([int.from_bytes(raw[:8], "little")], [row])
        self._hash_start.append(0)
        self._hash_count.append(0)
        self._emb_start.append(0)
        self._emb_len.append(-1)
        self._version.append(0)
        self._print_ms.append(-1)
        self._first_owner.append(-1)
        self._feat_start.append(0)
        self._feat_count.append(-1)
        self._emb_proj.append(-1)
        return row

    def _set_print(self, row: int, stored: StoredPrint, listed_at_ms: int) -> bool:
        fp = stored.fingerprint
        had = int(self._emb_len.data[row]) >= 0
        if had and listed_at_ms <= int(self._print_ms.data[row]):
            return False
        if not had:
            hashes = np.array(fp.indexed, dtype=np.uint64)
            start = self._hashes.extend(hashes)
            self._entry_row.extend(np.full(len(hashes), row, np.int32))
            if self._hashes.n - self._banded >= _PENDING:
                self._band_pending()
            self._mirror.data[row] = fp.mirror
            self._hash_start.data[row] = start
            self._hash_count.data[row] = len(hashes)
        if fp.features is not None and (not had or int(self._feat_count.data[row]) < 0):
            raw = np.frombuffer(fp.features.to_bytes(), np.uint8)
            self._feat_start.data[row] = self._feat.extend(raw)
            self._feat_count.data[row] = len(fp.features)
        if fp.embedding is None:
            self._emb_len.data[row] = 0
        else:
            emb = np.asarray(fp.embedding, np.float16).reshape(-1)
            self._emb_start.data[row] = self._emb.extend(emb)
            self._emb_len.data[row] = len(emb)
            self._project(row, emb)
        version = stored.model_version
        if version not in self._version_ids:
            self._version_ids[version] = len(self._versions)
            self._versions.append(version)
        self._version.data[row] = self._version_ids[version]
        self._print_ms.data[row] = listed_at_ms
        return True

    def _project(self, row: int, emb: npt.NDArray[np.float16]) -> None:
        """Add ``row``'s embedding to the nearest-neighbour scan (one dimension per index)."""
        if self._proj_matrix is None:
            self._proj_dim = len(emb)
            self._proj_matrix = _projection(self._proj_dim)
        if len(emb) != self._proj_dim:
            return
        slot = self._proj_row.append(row)
        self._proj.extend(emb.astype(np.float32) @ self._proj_matrix)
        self._emb_proj.data[row] = slot

    def _band_pending(self) -> None:
        """Put the hashes added since the last lookup into the band tables, in one go."""
        start, end = self._banded, self._hashes.n
        if start == end:
            return
        hashes = self._hashes.data[start:end]
        ids = np.arange(start, end, dtype=np.int32)
        for band, table in enumerate(self._bands):
            shift = np.uint64(HASH_BITS - _BAND_BITS * (band + 1))
            table.add((hashes >> shift) & _BAND_MASK, ids)
        self._banded = end

    def _set_owner(self, row: int, seller_id: str, product_id: str, listed_at_ms: int) -> bool:
        seller = self._seller_ids.get(seller_id)
        if seller is None:
            seller = self._seller_ids[seller_id] = len(self._sellers)
            self._sellers.append(seller_id)
        own = int(self._first_owner.data[row])
        while own >= 0:
            if int(self._own_seller.data[own]) == seller:
                if listed_at_ms >= int(self._own_ms.data[own]):
                    return False
                # An earlier listing than the one known (read out of order): it is the first.
                self._own_ms.data[own] = listed_at_ms
                self._set_text(own, product_id)
                return True
            own = int(self._own_next.data[own])
        own = self._own_next.append(self._first_owner.data[row])
        self._own_seller.append(seller)
        self._own_ms.append(listed_at_ms)
        self._own_text_start.append(0)
        self._own_text_len.append(0)
        self._set_text(own, product_id)
        self._first_owner.data[row] = own
        return True

    def _set_text(self, own: int, text: str) -> None:
        raw = text.encode("utf-8")
        self._own_text_start.data[own] = self._text.extend(np.frombuffer(raw, np.uint8))
        self._own_text_len.data[own] = len(raw)
