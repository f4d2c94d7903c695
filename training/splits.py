"""Patient- and near-duplicate-grouped train/validation/test splits, written to CSV.

Groups are the connected components of two relations: the same ``group_key`` (patient or
study, from the CSVs or file names) and near-duplicate pictures (32x32 standardised grey
thumbnails with correlation >= ``NEAR_DUP_R``). A group never straddles two splits. Groups are
assigned in a seeded random order to the split that is furthest below its target share for
the group's majority label, so each split keeps the label mix.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .common import SEED, SPLITS
from .data import Record, load_cache, records, thumbs32

NEAR_DUP_R = 0.95
FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
CACHE_SIZE_FOR_SPLIT = 64


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_ids(recs: list[Record], thumbs: np.ndarray, r_min: float = NEAR_DUP_R) -> np.ndarray:
    """Connected-component id per record (same key or near-duplicate picture)."""
    uf = _UnionFind(len(recs))
    first: dict[str, int] = {}
    for i, rec in enumerate(recs):
        key = rec.get("group_key") or ""
        if key:
            if key in first:
                uf.union(first[key], i)
            else:
                first[key] = i
    block = 1024
    for s in range(0, len(thumbs), block):
        corr = thumbs[s:s + block] @ thumbs.T
        rows, cols = np.nonzero(corr >= r_min)
        for a, b in zip(rows + s, cols):
            if a < b:
                uf.union(int(a), int(b))
    roots = np.array([uf.find(i) for i in range(len(recs))])
    _, ids = np.unique(roots, return_inverse=True)
    return ids


def assign(recs: list[Record], groups: np.ndarray, seed: int = SEED) -> list[str]:
    """Assign whole groups to train/val/test, stratified by each group's majority label."""
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[int(g)].append(i)
    totals = Counter(r["label"] for r in recs)
    filled = {s: Counter() for s in FRACTIONS}
    order = list(members)
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    order.sort(key=lambda g: -len(members[g]))  # big groups first (stable: random within size)
    out = [""] * len(recs)
    for g in order:
        idx = members[g]
        label = Counter(recs[i]["label"] for i in idx).most_common(1)[0][0]
        need = {s: FRACTIONS[s] * totals[label] - filled[s][label] for s in FRACTIONS}
        split = max(need, key=lambda s: need[s] / FRACTIONS[s])
        for i in idx:
            out[i] = split
            filled[split][recs[i]["label"]] += 1
    return out


def split_file(dataset: str) -> Path:
    return SPLITS / f"{dataset}.csv"


def make_split(dataset: str) -> Path:
    """Compute and write ``training/splits/<dataset>.csv`` (path, label, source, group, split)."""
    recs = records(dataset)
    cache = load_cache(dataset, CACHE_SIZE_FOR_SPLIT)
    assert list(cache["paths"]) == [r["path"] for r in recs]
    groups = group_ids(recs, thumbs32(cache["images"]))
    splits = assign(recs, groups)
    target = split_file(dataset)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "source", "group", "split"])
        for rec, g, s in zip(recs, groups, splits):
            w.writerow([rec["path"], rec["label"], rec["source"], int(g), s])
    return target


def read_split(dataset: str) -> dict[str, str]:
    """``path -> split`` from the committed CSV (computing it if absent)."""
    path = split_file(dataset)
    if not path.exists():
        make_split(dataset)
    with open(path, newline="") as fh:
        return {r["path"]: r["split"] for r in csv.DictReader(fh)}


def summary(dataset: str) -> str:
    with open(split_file(dataset), newline="") as fh:
        rows = list(csv.DictReader(fh))
    c = Counter((r["split"], r["label"]) for r in rows)
    sizes = Counter(Counter(r["group"] for r in rows).values())
    big = max(sizes)
    return f"{dataset}: {dict(sorted(c.items()))}; groups={len({r['group'] for r in rows})} largest={big}"
