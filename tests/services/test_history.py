"""History store: SQLite WAL, entries per image x model x run, overlays, corrupt DB handling."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from viewer.services.analysis_types import (
    AnalysisResult, FindingResult, Measurement, ModelResult, Overlay,
)
from viewer.services.history import SCHEMA_VERSION, HistoryStore, decode_heatmap, encode_heatmap


def _result(image_id: str = "1.2.3", p: float = 0.8, source: str = "/x/a.dcm") -> AnalysisResult:
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 5:20] = 1
    heat = np.linspace(0, 1, 2000, dtype=np.float32).reshape(40, 50)
    clf = ModelResult("pneumonia", "1.0.0", "classification", "ok", label="pneumonia",
                      probabilities={"normal": 1 - p, "pneumonia": p}, confidence=p, band="orange",
                      threshold=0.5, positive_label="pneumonia",
                      overlays=(Overlay("heatmap", "pneumonia", "pneumonia", heat),),
                      measurements=(Measurement("pneumonia.heatmap_share.lung_field",
                                                "heatmap_share", "pneumonia", "lung_field", 0.6,
                                                source="lungs"),))
    lungs = ModelResult("lungs", "2.0.0", "segmentation", "ok", label="lung",
                        overlays=(Overlay("mask", "lungs", "lung", mask, "lung_field"),))
    oos = ModelResult("covid", "1.0.0", "classification", "out_of_scope",
                      reason="not analysed: outside the model's intended input")
    return AnalysisResult(image_id, source, (40, 50), None, (clf, lungs, oos))


def test_record_and_list(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "data" / "history.sqlite") as store:
        run = store.new_run("test")
        ids = store.record(run, _result())
        assert len(ids) == 3 and store.count() == 3
        entries = store.entries(image_id="1.2.3")
        assert {e.model_id for e in entries} == {"pneumonia", "lungs", "covid"}
        clf = next(e for e in entries if e.model_id == "pneumonia")
        assert clf.probabilities == {"normal": pytest.approx(0.2), "pneumonia": 0.8}
        assert (clf.label, clf.band, clf.status, clf.forced) == ("pneumonia", "orange", "ok", False)
        assert clf.model_version == "1.0.0" and clf.threshold == 0.5 and clf.has_heatmap
        assert store.entries(status="out_of_scope")[0].model_id == "covid"
        assert store.entries(text="a.dcm", model_id="lungs")[0].has_mask
        assert store.entries(text="nothing-like-this") == []
        mode = sqlite3.connect(tmp_path / "data" / "history.sqlite").execute(
            "PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_each_run_is_a_new_entry_and_newest_first(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite") as store:
        first = store.new_run()
        store.record(first, _result(p=0.6))
        second = store.new_run()
        store.record(second, _result(p=0.9))
        rows = store.entries(model_id="pneumonia")
        assert [r.run_id for r in rows] == [second, first]
        assert rows[0].confidence == 0.9
        assert len(store.entries(run_id=first)) == 3
        assert len(store.entries(limit=2)) == 2


def test_overlays_reopen_losslessly(tmp_path: Path) -> None:
    res = _result()
    with HistoryStore(tmp_path / "h.sqlite") as store:
        run = store.new_run()
        ids = store.record(run, res)
        mask, heat = store.overlays(ids[1])
        np.testing.assert_array_equal(mask, res.results[1].mask)
        assert heat is None
        mask, heat = store.overlays(ids[0])
        assert mask is None
        np.testing.assert_allclose(heat, res.results[0].heatmap, atol=1 / 65535)
        with pytest.raises(KeyError):
            store.overlays(99999)


def test_entries_persist_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path) as store:
        store.record(store.new_run(), _result())
    with HistoryStore(path) as store:
        assert store.count() == 3 and store.messages == []


def test_population_caution_is_stored_and_reopened(tmp_path: Path) -> None:
    res = _result()
    warned = dataclasses.replace(res.results[0], caution="patient aged 40 y; model trained on ages 1-6 y")
    res = dataclasses.replace(res, results=(warned, *res.results[1:]))
    path = tmp_path / "h.sqlite"
    with HistoryStore(path) as store:
        store.record(store.new_run(), res)
    with HistoryStore(path) as store:
        by_model = {e.model_id: e for e in store.entries()}
    assert by_model["pneumonia"].caution == "patient aged 40 y; model trained on ages 1-6 y"
    assert by_model["lungs"].caution == ""


# The schema of viewer versions before the caution column (user_version 1), written out here
# so the migration is tested against what those versions actually created.
_SCHEMA_V1 = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, started REAL NOT NULL, note TEXT NOT NULL DEFAULT '');
CREATE TABLE entries (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    image_id TEXT NOT NULL, source TEXT NOT NULL, model_id TEXT NOT NULL,
    model_version TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    label TEXT NOT NULL DEFAULT '', band TEXT NOT NULL DEFAULT '', confidence REAL,
    threshold REAL, probabilities TEXT NOT NULL DEFAULT '{}', forced INTEGER NOT NULL DEFAULT 0,
    heatmap_in_lung REAL, created REAL NOT NULL, mask_png BLOB, heatmap_png BLOB,
    UNIQUE (run_id, image_id, model_id, model_version));
INSERT INTO runs VALUES (1, 1700000000.0, 'old');
INSERT INTO entries(run_id, image_id, source, model_id, model_version, status, label,
    confidence, created) VALUES (1, '9.8.7', '/old/b.dcm', 'pneumonia', '1.0.0', 'ok',
    'normal', 0.91, 1700000001.0);
PRAGMA user_version = 1;
"""


def test_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_V1)
    conn.close()
    with HistoryStore(path) as store:
        assert store.messages == []  # migrated, not moved aside
        (old,) = store.entries()
        assert (old.image_id, old.label, old.confidence, old.caution) == ("9.8.7", "normal", 0.91, "")
        store.record(store.new_run(), dataclasses.replace(
            _result(), results=(dataclasses.replace(_result().results[0], caution="age"),)))
        assert store.entries(model_id="pneumonia")[0].caution == "age"
        assert store.count() == 2
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    conn.close()
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_corrupt_database_is_moved_aside_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"this is not an sqlite database" * 100)
    with HistoryStore(path) as store:
        assert store.count() == 0
        assert len(store.messages) == 1 and "could not be read" in store.messages[0]
        kept = list(tmp_path.glob("h.sqlite.corrupt-*"))
        assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not")
        assert kept[0].name in store.messages[0]


def test_concurrent_writers(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite") as store:
        run = store.new_run()

        def work(k: int) -> None:
            for i in range(5):
                store.record(run, _result(image_id=f"{k}-{i}"))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.count() == 45


def test_heatmap_codec_range() -> None:
    heat = np.array([[0.0, 0.5, 1.0, 1.5]], np.float32)
    np.testing.assert_allclose(decode_heatmap(encode_heatmap(heat)), [[0, 0.5, 1, 1]], atol=1e-5)


# The schema-2 table (user_version 2) as those versions created it: fixed heatmap_in_lung,
# mask_png and heatmap_png columns, one mask per entry.
_SCHEMA_V2 = _SCHEMA_V1.replace(
    "heatmap_png BLOB,", "heatmap_png BLOB, caution TEXT NOT NULL DEFAULT '',").replace(
    "PRAGMA user_version = 1;", "PRAGMA user_version = 2;")


def test_version_2_database_moves_fixed_columns_to_measurements_and_overlays(tmp_path: Path) -> None:
    from viewer.services.history import encode_mask

    mask = np.zeros((8, 9), np.uint8)
    mask[2:5, 3:7] = 1
    heat = np.linspace(0, 1, 72, dtype=np.float32).reshape(8, 9)
    path = tmp_path / "h.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_V2)
    with conn:
        conn.execute("UPDATE entries SET heatmap_in_lung = 0.42, heatmap_png = ?",
                     (encode_heatmap(heat),))
        conn.execute("INSERT INTO entries(run_id, image_id, source, model_id, model_version, "
                     "status, label, created, mask_png) VALUES (1, '9.8.7', '/old/b.dcm', "
                     "'lungs', '2.0.0', 'ok', 'lung', 1700000002.0, ?)", (encode_mask(mask),))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()
    with HistoryStore(path) as store:
        assert store.messages == []
        by_model = {e.model_id: e for e in store.entries()}
        clf, lungs = by_model["pneumonia"], by_model["lungs"]
        assert clf.measurements == {"pneumonia.heatmap_share.lung_field": 0.42}
        assert clf.heatmap_in_lung == 0.42 and clf.has_heatmap and not clf.has_mask
        assert lungs.has_mask and not lungs.has_heatmap and lungs.measurements == {}
        (stored,) = store.stored_overlays(lungs.id)
        assert (stored.kind, stored.label, stored.role) == ("mask", "lung", "lung_field")
        np.testing.assert_array_equal(stored.array, mask)
        np.testing.assert_allclose(store.overlays(clf.id)[1], heat, atol=1 / 65535)
        store.record(store.new_run(), _result())  # the migrated database takes new rows
        assert store.count() == 5
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    # Moved, not copied: the old columns are emptied in place.
    assert conn.execute("SELECT COUNT(*) FROM entries WHERE mask_png IS NOT NULL OR "
                        "heatmap_png IS NOT NULL OR heatmap_in_lung IS NOT NULL").fetchone()[0] == 0
    conn.close()


def test_segments_measurements_and_findings_round_trip(tmp_path: Path) -> None:
    masks = [np.zeros((6, 7), np.uint8) for _ in range(2)]
    masks[0][1:3, 1:3] = 1
    masks[1][4:6, 2:6] = 1
    seg = ModelResult("ptx", "1.0.0", "segmentation", "ok", label="pneumothorax, effusion",
                      overlays=(Overlay("mask", "ptx", "pneumothorax", masks[0], "finding"),
                                Overlay("mask", "ptx", "effusion", masks[1], "finding")),
                      measurements=(Measurement("ptx.area_fraction.pneumothorax", "area_fraction",
                                                "ptx", "pneumothorax", 4 / 42),))
    ml = ModelResult("chest14", "1.0.0", "classification", "ok", label="edema",
                     findings=(FindingResult("edema", 0.8, 0.6, "positive", "orange"),
                               FindingResult("mass", 0.1, 0.3, "negative", "green")))
    with HistoryStore(tmp_path / "h.sqlite") as store:
        ids = store.record(store.new_run(), AnalysisResult("1.2", "/x.dcm", (6, 7), None, (seg, ml)))
        stored = store.stored_overlays(ids[0])
        assert [(o.label, o.role) for o in stored] == [("pneumothorax", "finding"), ("effusion", "finding")]
        for o, m in zip(stored, masks):
            np.testing.assert_array_equal(o.array, m)
        entry = store.entries(model_id="ptx")[0]
        assert entry.measurements == {"ptx.area_fraction.pneumothorax": round(4 / 42, 4)}
        f = store.entries(model_id="chest14")[0].findings
        assert f["edema"] == {"probability": 0.8, "threshold": 0.6, "call": "positive", "band": "orange"}
        assert f["mass"]["call"] == "negative"
