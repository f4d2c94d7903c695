"""Privacy: no network, no writes into study folders, no patient identifiers in logs or cache
names, and de-identified exports (PS3.15 Annex E Basic Profile) on request.

One full session runs in-process (scan, thumbnails, analysis input, analysis with the committed
models when present, history, every export, ``radview analyze``) under a Python audit hook
that records every ``socket.*`` event, with every logger at DEBUG captured, stdout/stderr
captured, and the study folder's listing, sizes and modification times snapshotted before and
after. Patient's Name and Patient ID carry known markers that must never leak.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import numpy as np
import pydicom
import pytest

from tests import dicom_factory

NAME_MARKER = "Qxzmarker"
ID_MARKER = "PHI7731MARK"
MARKERS = (NAME_MARKER, ID_MARKER, NAME_MARKER.upper(), "19470203")

_socket_events: list[str] = []
_watching = threading.Event()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watching.is_set() and event.startswith("socket."):
        _socket_events.append(event)


sys.addaudithook(_audit)  # process-wide and permanent; records only while _watching is set


def _socket_fds() -> set[str]:
    """Socket descriptors of this process (catches sockets made by C/C++ code too)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            snap[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    snap["."] = (0, root.stat().st_mtime_ns)
    return snap


def _make_study(root: Path) -> Path:
    study = root / "study"
    rows, cols = 256, 224
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = (2000 + 1500 * np.sin(xx / 30.0) * np.cos(yy / 40.0)).astype(np.uint16)
    common = dict(PatientName=f"{NAME_MARKER}^Jane", PatientID=ID_MARKER, PatientBirthDate="19470203",
                  InstitutionName=f"{NAME_MARKER} Hospital", BodyPartExamined="CHEST",
                  WindowCenter=2000, WindowWidth=3000, PixelSpacing=[0.2, 0.2])
    dicom_factory.write_dicom(study / "s1" / "img1.dcm", img, bits_stored=12, **common)
    dicom_factory.write_dicom(study / "s1" / "img2.dcm", img[::-1].copy(), bits_stored=12,
                              BurnedInAnnotation="NO", **common)
    return study


@dataclass
class Session:
    study: Path
    before: dict[str, tuple[int, int]]
    after: dict[str, tuple[int, int]]
    sockets: list[str]
    new_socket_fds: set[str]
    logs: str
    output: str
    cache_names: list[str]
    history_bytes: bytes
    deidentified: dict[str, bytes] = field(default_factory=dict)
    identified_seg: bytes = b""
    uid_checks: dict[str, Any] = field(default_factory=dict)
    burned_in_warnings: list[str] = field(default_factory=list)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _all_logging() -> Iterator[_Collect]:
    handler = _Collect()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    loggers = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    levels = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
        for lg, level in levels:
            lg.setLevel(level)


def _run_session(tmp: Path) -> Session:
    from viewer.dicom.deidentify import UidMap
    from viewer.dicom.export import write_heatmap_capture, write_lung_segmentation
    from viewer.inference.registry import ModelRegistry
    from viewer.inference.sessions import SessionPool
    from viewer.services.analysis import AnalysisService
    from viewer.services.analysis_inputs import input_from_record
    from viewer.services.export import RowDeidentifier, result_rows, write_csv, write_json, write_png
    from viewer.services.history import HistoryStore
    from viewer.services.library import load_image, scan_paths
    from viewer.services.thumbnails import ThumbnailStore

    study = _make_study(tmp)
    before = _snapshot(study)
    out = tmp / "exports"
    cache = tmp / "cache"
    fds_before = _socket_fds()
    stream = io.StringIO()
    session = Session(study, before, {}, [], set(), "", "", [], b"")
    _watching.set()
    try:
        with _all_logging() as logs, contextlib.redirect_stdout(stream), \
                contextlib.redirect_stderr(stream), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scan = scan_paths([str(study)], workers=1)
            records = scan.index.records()
            assert len(records) == 2 and not scan.problems
            store = ThumbnailStore(cache)
            registry = ModelRegistry.default()
            service = AnalysisService(registry, SessionPool(1)) if registry.available() else None
            results = []
            with HistoryStore(tmp / "userdata" / "history.sqlite") as history:
                run = history.new_run("privacy")
                for rec in records:
                    load_image(rec)
                    store.make(rec)
                    inp = input_from_record(rec)
                    if service is not None:
                        result = service.analyse(inp)
                        history.record(run, result)
                        results.append(result)
            rows = [row for r in results for row in result_rows(r)]
            if not rows:  # no committed models: still export rows naming the images
                rows = [{"file": f"{r.path}", "image_id": r.sop_instance_uid, "model_id": "none"}
                        for r in records]
            uids = UidMap()
            deid = RowDeidentifier(uids)
            write_csv(rows, out / "plain.csv")
            write_csv(rows, out / "deid.csv", deidentify=deid)
            write_json(rows, out / "deid.json", deidentify=deid)
            write_png(np.zeros((64, 80, 3), np.uint8), out / "view.png")
            src = pydicom.dcmread(records[0].path)
            mask = np.zeros((src.Rows, src.Columns), np.uint8)
            mask[20:120, 30:100] = 1
            write_lung_segmentation(src, mask, out / "seg_id.dcm", algorithm_name="lungs",
                                    algorithm_version="1")
            write_lung_segmentation(src, mask, out / "seg.dcm", algorithm_name="lungs",
                                    algorithm_version="1", deidentify=uids)
            rgb = np.zeros((src.Rows, src.Columns, 3), np.uint8)
            write_heatmap_capture(src, rgb, out / "sc.dcm", description="heatmap", deidentify=uids)
            src2 = pydicom.dcmread(records[1].path)  # (0028,0301) NO: no warning for this one
            write_heatmap_capture(src2, rgb, out / "sc2.dcm", description="heatmap", deidentify=uids)
            if service is not None:
                from viewer.cli import analyze_main

                code = analyze_main([str(study), "--out", str(out / "cli.csv"),
                                     "--masks", str(out / "masks"), "--heatmaps", str(out / "heat"),
                                     "--workers", "1"])
                assert code in (0, 1)
                analyze_main([str(study), "--workers", "1"])  # CSV on stdout, progress on stderr
            session.burned_in_warnings = [str(w.message) for w in caught
                                          if "Burned In Annotation" in str(w.message)]
    finally:
        _watching.clear()
    session.sockets = list(_socket_events)
    session.new_socket_fds = _socket_fds() - fds_before
    session.logs = "\n".join(logs.lines)
    session.output = stream.getvalue()
    session.after = _snapshot(study)
    session.cache_names = [str(p.relative_to(cache)) for p in cache.rglob("*")]
    session.history_bytes = b"".join(p.read_bytes() for p in (tmp / "userdata").glob("history.sqlite*"))
    session.deidentified = {n: (out / n).read_bytes() for n in ("deid.csv", "deid.json", "seg.dcm",
                                                                  "sc.dcm", "sc2.dcm")}
    session.identified_seg = (out / "seg_id.dcm").read_bytes()
    seg, sc = pydicom.dcmread(out / "seg.dcm"), pydicom.dcmread(out / "sc.dcm")
    session.uid_checks = {
        "source_sop": str(src.SOPInstanceUID), "source_study": str(src.StudyInstanceUID),
        "mapped_sop": uids(str(src.SOPInstanceUID)),
        "seg_ref": str(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID),
        "sc_ref": str(sc.SourceImageSequence[0].ReferencedSOPInstanceUID),
        "seg_study": str(seg.StudyInstanceUID), "sc_study": str(sc.StudyInstanceUID),
        "seg_removed": str(seg.get("PatientIdentityRemoved", "")),
        "sc_removed": str(sc.get("PatientIdentityRemoved", "")),
        "sc_method_code": str(sc.DeidentificationMethodCodeSequence[0].CodeValue),
        "csv_ids": (out / "deid.csv").read_text(),
    }
    return session


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return _run_session(tmp_path_factory.mktemp("privacy"))


def test_no_network(session: Session) -> None:
    assert session.sockets == []
    assert session.new_socket_fds == set()


def test_study_folder_untouched(session: Session) -> None:
    assert session.after == session.before


def test_no_identifiers_in_logs_output_or_cache(session: Session) -> None:
    from viewer.services.support_log import LOG_FILE_NAME, default_log_dir

    support_log = (default_log_dir() / LOG_FILE_NAME).read_text(encoding="utf-8")
    assert "analyze done:" in support_log  # radview analyze wrote its support log
    for marker in MARKERS + ("/study/",):
        assert marker not in support_log
    text = session.logs + session.output
    assert text  # the CLI's progress and CSV were captured
    for marker in MARKERS:
        assert marker not in text
        assert not any(marker in name for name in session.cache_names)
        assert marker.encode() not in session.history_bytes


def test_deidentified_exports(session: Session) -> None:
    assert NAME_MARKER.encode() in session.identified_seg  # the plain export does carry it
    for name, data in session.deidentified.items():
        for marker in MARKERS:
            assert marker.encode() not in data, (name, marker)
        assert b"/study/" not in data, name  # no source paths
    u = session.uid_checks
    assert u["mapped_sop"] != u["source_sop"]
    assert u["seg_ref"] == u["sc_ref"] == u["mapped_sop"]
    assert u["seg_study"] == u["sc_study"] != u["source_study"]
    assert u["seg_removed"] == u["sc_removed"] == "YES" and u["sc_method_code"] == "113100"
    assert u["source_sop"] not in u["csv_ids"]
    # The CSV rows of the exported source carry the same new UID as the SEG and SC.
    assert u["mapped_sop"] in u["csv_ids"] and "image-0001" in u["csv_ids"]
    # (0028,0301) absent on the first source -> warned once; NO on the second -> not warned.
    assert len(session.burned_in_warnings) == 1


def test_gui_session_opens_no_socket_and_leaves_study_untouched(qtbot: Any, tmp_path: Path) -> None:
    pytest.importorskip("PySide6")
    from PySide6.QtCore import QSettings

    from tests.ui.helpers import open_and_wait
    from viewer.app import build_window
    from viewer.ui.settings import AppSettings

    study = _make_study(tmp_path)
    before = _snapshot(study)
    fds_before = _socket_fds()
    _socket_events.clear()
    _watching.set()
    try:
        with _all_logging() as logs:
            settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
            window = build_window(settings, tmp_path / "thumbs", io_workers=2, thumb_workers=1,
                                  decode_processes=0, history_path=tmp_path / "hist.sqlite")
            qtbot.addWidget(window)
            window.show()
            qtbot.waitExposed(window)
            open_and_wait(qtbot, window, [str(study)])
            ai = getattr(window, "ai", None)
            analysed = ai is not None and bool(ai.registry.available())
            if analysed:  # analysis in the window too (stored in the history)
                with qtbot.waitSignal(ai.controller.sig_result_ready, timeout=60000):
                    ai.analyse_current()
            window.close()
            window.shutdown()
    finally:
        _watching.clear()
    assert _socket_events == []
    assert _socket_fds() - fds_before == set()
    assert _snapshot(study) == before
    history = b"".join(p.read_bytes() for p in tmp_path.glob("hist.sqlite*"))
    assert history or not analysed
    for marker in MARKERS:
        assert marker not in "\n".join(logs.lines)
        assert marker.encode() not in history


def test_deidentify_dataset_profile(tmp_path: Path) -> None:
    """Attribute-level checks of the Basic Profile actions on a rich header."""
    from pydicom.dataset import Dataset

    from viewer.dicom.deidentify import UidMap, burned_in_annotation_warning, deidentify_dataset

    path = dicom_factory.write_dicom(
        tmp_path / "x.dcm", np.zeros((8, 8), np.uint16), PatientName=f"{NAME_MARKER}^A",
        PatientID=ID_MARKER, PatientBirthDate="19470203", OperatorsName="Op^Erator",
        InstitutionName="General", StationName="XR1", AcquisitionDate="20240101",
        BurnedInAnnotation="YES", StudyDescription=f"{NAME_MARKER} chest")
    ds = pydicom.dcmread(path)
    ds.add_new(0x00091010, "LO", f"{NAME_MARKER} private")
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5"
    item.PersonName = f"{NAME_MARKER}^Nested"
    ds.ReferencedImageSequence = [item]
    original = pydicom.dcmread(path)
    uids = UidMap()
    out = deidentify_dataset(ds, uids)
    assert str(ds.PatientName) == f"{NAME_MARKER}^A"  # the source is untouched
    for keyword in ("PatientBirthDate", "AcquisitionDate"):
        assert keyword in out and str(out[keyword].value or "") == ""
    # Patient ID / Name and Study ID: a pseudonym (Z with a dummy value), the same within a map.
    assert str(out.PatientID).startswith("ANON-") and ID_MARKER not in str(out.PatientID)
    assert str(out.PatientName) == "Anonymous^" + str(out.PatientID)[len("ANON-"):]
    assert str(out.StudyID).startswith("S") and len(str(out.StudyID)) == 11
    assert deidentify_dataset(ds, uids).PatientID == out.PatientID
    assert deidentify_dataset(ds, UidMap()).PatientID != out.PatientID
    for keyword in ("OperatorsName", "InstitutionName", "StationName", "StudyDescription"):
        assert keyword not in out
    assert 0x00091010 not in out
    nested = out.ReferencedImageSequence[0]
    assert "PersonName" not in nested or str(nested.PersonName or "") == ""
    assert nested.ReferencedSOPInstanceUID == uids("1.2.3.4.5") != "1.2.3.4.5"
    assert nested.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.1"  # a class, not an instance
    assert out.SOPInstanceUID == uids(str(original.SOPInstanceUID))
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.PatientIdentityRemoved == "YES"
    assert UidMap()(str(original.SOPInstanceUID)) != out.SOPInstanceUID  # unlinkable across maps
    assert "says YES" in (burned_in_annotation_warning(ds) or "")
