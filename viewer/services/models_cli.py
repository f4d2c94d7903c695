"""``radview models add | check | list``: a researcher's own model, from ONNX file to results.

``add`` inspects and wires the graph (:mod:`viewer.inference.model_add`), ``check`` runs a model
on sample images through :class:`~viewer.services.analysis.AnalysisService` (the path the window
and ``radview analyze`` use; no second inference path) and prints what the results panel would
show, ``list`` shows every model found and why an unavailable one is unavailable. Never imports Qt.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from viewer import RESEARCH_NOTICE, __version__

if TYPE_CHECKING:
    from viewer.inference.manifest import ModelManifest
    from viewer.inference.registry import ModelRegistry
    from viewer.services.analysis_types import AnalysisResult

__all__ = ["models_main", "build_parser", "format_result"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_EPILOG = f"""\
models are looked up in the --models-dir folders, then the user models folder
($RADVIEW_MODELS_DIR, else the per-user data folder: radview models list shows it), then the
bundled models. docs/MODELS.md ("Your own model") describes what add writes.

exit status: 0 done; 1 the model cannot be added or loaded, or every file failed; 2 usage error
(bad option, unknown model id, no image found).

{RESEARCH_NOTICE}
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="radview models", description="Add, check and list models.",
                                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"radview {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{add,check,list}")
    add = sub.add_parser("add", help="turn an ONNX model into a radview model (manifest + checks)",
                         description="Inspect MODEL.onnx, wire Grad-CAM++ when the head is a global "
                         "average pool + linear layer, and write <id>.onnx + <id>.json into the "
                         "user models folder (the original file is never modified).")
    add.add_argument("model", type=Path, metavar="MODEL.onnx")
    add.add_argument("--task", required=True, choices=("classification", "multilabel", "segmentation"),
                     help="classification: exclusive classes (softmax); multilabel: one sigmoid per "
                     "finding; segmentation: N x C x H x W mask logits")
    add.add_argument("--labels", required=True, help="comma-separated, in the output's order "
                     "(segmentation: one per channel, or the segment's name for one channel)")
    add.add_argument("--id", dest="model_id", help="model id (default: the file name)")
    add.add_argument("--name", help="display name (default: the id)")
    add.add_argument("--model-version", default="1.0.0", help="the model's version (default 1.0.0)")
    add.add_argument("--threshold", type=float, help="operating point: on P(--positive) "
                     "(classification), each finding's (multilabel), the sigmoid's (segmentation); "
                     "default 0.5")
    add.add_argument("--positive", help="classification: the label the threshold refers to")
    add.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                     help="input size, required when the graph's input size is dynamic")
    add.add_argument("--mean", type=float, help="normalisation mean of x/255 (default 0.5)")
    add.add_argument("--std", type=float, help="normalisation std of x/255 (default 0.25)")
    add.add_argument("--applies-to", default="", metavar="REGIONS",
                     help="comma-separated body regions the model is for (e.g. chest): the "
                     "body-region model then gates it")
    add.add_argument("--role", action="append", default=[], metavar="[LABEL=]ROLE",
                     help="segmentation: lung_field, finding, anatomy or region (default region)")
    add.add_argument("--codes", metavar="JSON|FILE", help='coded concepts per label, e.g. '
                     '\'{"lung": {"category": ["SCT","123037004","Anatomical Structure"], '
                     '"type": ["SCT","39607008","Lung"]}}\' (needed for DICOM SEG export)')
    add.add_argument("--logits-output", metavar="NAME", help="the graph output carrying the "
                     "logits, when there are several")
    add.add_argument("--folder", type=Path, help="models folder to write to (default: the user "
                     "models folder)")
    add.add_argument("--force", action="store_true", help="replace a model with the same id")
    check = sub.add_parser("check", help="run a model on sample images and print its results")
    check.add_argument("model_id", metavar="ID")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="DICOM/PNG/JPEG files or folders")
    check.add_argument("--force", action="store_true", help="run even outside the intended input or data")
    lst = sub.add_parser("list", help="list the models found and why any is unavailable")
    for sp in (check, lst):
        sp.add_argument("--models-dir", type=Path, action="append", default=[], metavar="DIR",
                        help="extra models folder, searched first (repeatable)")
    return p


def _say(text: str, out: IO[str] | None = None) -> None:
    print(text, file=out or sys.stdout, flush=True)


def _fail(command: str, text: str) -> None:
    print(f"radview models {command}: {text}", file=sys.stderr, flush=True)


def models_main(argv: Sequence[str]) -> int:
    """Entry point of ``radview models``; returns the exit status (see ``--help``)."""
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if args.command == "add":
        return _add(args)
    if args.command == "check":
        return _check(args)
    return _list(args)


# ---- add -----------------------------------------------------------------------------------
def _add(args: argparse.Namespace) -> int:
    from viewer.inference.model_add import (
        AddOptions, ModelAddError, add_model, parse_codes, parse_roles, user_models_dir,
    )

    try:
        opts = AddOptions(
            source=args.model, task=args.task,
            labels=tuple(x.strip() for x in args.labels.split(",") if x.strip()),
            folder=args.folder or user_models_dir(), model_id=args.model_id, name=args.name,
            version=args.model_version, threshold=args.threshold, positive=args.positive,
            input_size=None if args.input_size is None else (args.input_size[0], args.input_size[1]),
            mean=args.mean, std=args.std,
            applies_to=tuple(x.strip() for x in args.applies_to.split(",") if x.strip()),
            roles=parse_roles(args.role), codes=parse_codes(args.codes),
            logits_output=args.logits_output, force=args.force)
        if opts.input_size is not None and min(opts.input_size) < 8:
            raise ModelAddError(f"--input-size {opts.input_size[0]} {opts.input_size[1]}: expected "
                                "at least 8 x 8 pixels")
        report = add_model(opts)
    except ModelAddError as exc:
        _fail("add", str(exc))
        return EXIT_FAILED
    except OSError as exc:
        _fail("add", f"cannot write into the models folder: {exc.strerror or exc}")
        return EXIT_FAILED
    m = report.manifest
    spec = m["input"]
    what = f"{len(m['labels'])} labels: {', '.join(m['labels'])}"
    if "findings" in m:
        what = f"multi-label, {len(m['findings'])} findings: {', '.join(f['label'] for f in m['findings'])}"
    if "segments" in m:
        what = "segments: " + ", ".join(f"{s['label']} (channel {s['channel']}, role {s['role']}"
                                        + (", coded" if "type" in s else ", no codes: no DICOM SEG")
                                        + ")" for s in m["segments"])
    _say(f"added model {m['id']} {m['version']} ({m['task']}; {what})")
    _say(f"  input: {spec['name']} 1 x {spec['channels']} x {spec['size'][0]} x {spec['size'][1]}, "
         f"mean {spec['mean']:g}, std {spec['std']:g} of x/255")
    _say("  outputs: " + ", ".join(f"{o['name']} ({o['kind']})" for o in m["outputs"]))
    _say(f"  {report.gradcam_note}")
    for decl in m.get("measurements", []):
        _say(f"  measurement: {m['id']}.{decl['kind']}.{decl.get('segment') or decl.get('role')}")
    for note in report.notes:
        _say(f"  note: {note}")
    _say(f"  wrote {report.onnx_path} (sha256 {m['sha256'][:16]}...)")
    _say(f"  wrote {report.manifest_path}")
    _say("  checked: the manifest loads and the model runs in radview")
    _say(f"next: radview models check {m['id']} IMAGE...")
    return EXIT_OK


# ---- list ----------------------------------------------------------------------------------
def _registry(models_dirs: Sequence[Path]) -> ModelRegistry:
    from viewer.inference.registry import ModelRegistry
    from viewer.services.ai_session import model_folders

    return ModelRegistry.default(model_folders(models_dirs))


def _list(args: argparse.Namespace) -> int:
    from viewer.inference.model_add import user_models_dir

    registry = _registry(args.models_dir)
    _say(f"user models folder: {user_models_dir()}")
    rows = [("id", "version", "task", "folder", "state")]
    for e in registry.entries:
        m = e.manifest
        rows.append((e.id, m.version if m else "?", (m.task if m else "?") + (
            " (gate)" if m is not None and m.gate else ""), str(e.manifest_path.parent),
            "available" if e.available else f"unavailable: {e.reason}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        _say("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    return EXIT_OK


# ---- check ---------------------------------------------------------------------------------
def _check(args: argparse.Namespace) -> int:
    from viewer.core.messages import exception_words
    from viewer.inference.sessions import SessionPool
    from viewer.services.analysis import AnalysisService
    from viewer.services.analysis_inputs import input_from_record
    from viewer.services.library import scan_paths

    registry = _registry(args.models_dir)
    entries = [e for e in registry.entries if e.id == args.model_id]
    if not entries:
        known = ", ".join(sorted({e.id for e in registry.entries})) or "none"
        _fail("check", f"no model {args.model_id!r} (models found: {known})")
        return EXIT_USAGE
    manifest = registry.get(args.model_id)
    if manifest is None:
        _fail("check", f"model {args.model_id!r} is unavailable: {entries[0].reason}")
        return EXIT_FAILED
    wanted = {manifest.id} | _helpers(registry, manifest)
    missing = [str(p) for p in args.files if not p.exists()]
    for name in missing:
        _say(f"{name}: no such file", sys.stderr)
    scan = scan_paths([str(p) for p in args.files if p.exists()], workers=1)
    for problem in scan.problems:
        _say(f"skipped {problem.path}: {problem.reason}", sys.stderr)
    records = [r for r in scan.index.records() if r.is_image]
    if not records:
        _fail("check", "no image could be read in the given files" if missing or scan.problems
              else "no image found in the given files")
        return EXIT_FAILED if missing or scan.problems else EXIT_USAGE
    service = AnalysisService(registry, SessionPool(1))
    _say(f"{manifest.name} ({manifest.id} {manifest.version}, {manifest.task}) on "
         f"{len(records)} image(s)" + (f"; with {', '.join(sorted(wanted - {manifest.id}))}"
                                        if len(wanted) > 1 else ""))
    failed = 0
    for record in records:
        shown = Path(record.path).name + (f" [{record.member}]" if record.member else "")
        try:
            inp = input_from_record(record)
            result = service.analyse(inp, models=wanted, force=args.force, heatmaps=True)
        except Exception as exc:  # a file that cannot be read or decoded: its line says why
            failed += 1
            why = str(exc) if type(exc).__name__ == "LoadError" else exception_words(exc)
            _say(f"\n{shown}\n  error: {why}")
            continue
        res = result.result(manifest.id)
        failed += res is None or res.status == "error"
        _say(f"\n{shown} ({result.image_shape[1]} x {result.image_shape[0]} px)")
        for line in format_result(result, manifest.id, registry):
            _say(f"  {line}")
        for msg in result.messages:
            _say(f"  note: {msg}")
    _say(f"\n{len(records) - failed} of {len(records)} image(s) analysed. {RESEARCH_NOTICE}")
    return EXIT_FAILED if failed == len(records) else EXIT_OK


def _helpers(registry: ModelRegistry, manifest: ModelManifest) -> set[str]:
    """The segmenters whose masks a classifier's ``heatmap_share`` measurements need: the
    panel shows the share only when such a model ran on the image."""
    roles = {d.role for d in manifest.measurements if d.kind == "heatmap_share"}
    return {m.id for m in registry.available() if m.task == "segmentation" and any(
        s.role in roles for s in m.segments)}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_result(result: AnalysisResult, model_id: str, registry: ModelRegistry) -> list[str]:
    """The lines the results panel shows for one model's result on one image (plain text):
    status and reason, caution, call, calibrated probability, band, multi-label findings,
    declared measurements, overlays (Grad-CAM++ heatmap, masks)."""
    lines: list[str] = []
    gate = result.gate
    if gate is not None:
        lines.append(f"body region: {gate.region} ({_pct(gate.confidence)})"
                     + (f" - {gate.unknown_reason}" if gate.unknown_reason else ""))
    res = result.result(model_id)
    if res is None:
        return [*lines, "status: not run"]
    manifest = registry.get(model_id)
    lines.append(f"status: {res.status}" + (" (forced)" if res.forced else ""))
    if res.reason:
        lines.append(f"reason: {res.reason}")
    if res.caution:
        lines.append(f"caution: {res.caution}")
    if res.status != "ok":
        return lines
    bands = dict(manifest.bands) if manifest is not None else {}
    edges = (f" (green >= {_pct(bands.get('green'))}, orange >= {_pct(bands.get('orange'))})"
             if bands else "")
    if res.task == "classification" and res.label is not None and not res.findings:
        call = f"call: {res.label}"
        if res.positive_label and res.positive_probability is not None and res.threshold is not None:
            call += (f" (P({res.positive_label}) {_pct(res.positive_probability)} calibrated, "
                     f"threshold {_pct(res.threshold)})")
        lines.append(call)
        lines.append(f"confidence: {_pct(res.confidence)}, band {res.band or '-'}{edges}")
        if res.probabilities:
            lines.append("probabilities: " + ", ".join(
                f"{k} {_pct(v)}" for k, v in res.probabilities.items()))
    for f in res.findings:
        lines.append(f"finding {f.label}: {f.call} (P {_pct(f.probability)}, threshold "
                     f"{_pct(f.threshold)}, band {f.band})")
    for m in res.measurements:
        lines.append(f"{m.key}: {m.text()}" + (f" (masks of {m.source})" if m.source else "")
                     + (f" ({m.note})" if m.note else ""))
    if res.task == "classification":
        if res.heatmap is not None:
            lines.append(f"Grad-CAM++: yes, for {res.heatmap_label!r}")
        elif manifest is None or manifest.gradcam_weight is None:
            lines.append("Grad-CAM++: no (the manifest has no gradcam head)")
        else:
            lines.append("Grad-CAM++: no")
    measured = {m.label for m in res.measurements if m.kind == "area_fraction"}
    for o in res.overlays_of("mask"):
        if o.label in measured:
            continue
        lines.append(f"mask {o.label} (role {o.role}): {_pct(float((o.array > 0).mean()))} of the image")
    return lines
