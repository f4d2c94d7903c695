"""Model card ``models/<id>.md`` with figures in ``models/cards/<id>/``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import figures
from .recipes import Recipe


def restamp(text: str, manifest: dict[str, Any]) -> str:
    """A card's title version and file checksum set to the manifest's (after a graft)."""
    text = re.sub(r"^# (.*) \(`(\w+)` [0-9.]+\)", rf"# \1 (`\2` {manifest['version']})", text, count=1)
    return re.sub(r"sha256 `[0-9a-f]+`", f"sha256 `{manifest['sha256']}`", text, count=1)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


# Limitations section of each card (also rewritten by training/population.py).
LIMITATIONS: dict[str, list[str]] = {
    "pneumonia": ["- Trained and tested only on Kermany paediatric images from one centre. The "
                  "checkpoint, temperature and threshold were chosen on external_val (half of "
                  "the official Kermany test split), so its figures are optimistic; the sealed "
                  "other half is the real check.",
                  "- The operating threshold is the external_val balanced point; on the own "
                  "split (easier, from the train images) it trades sensitivity for specificity.",
                  "- Not for adults. The applicability check refuses only part of the adult "
                  "films (rates above; the body-region gate cannot see age), so an adult film "
                  "may still get a pneumonia result. Patient IDs cannot be verified across "
                  "Kermany copies."],
    "covid": ["- Source confounds the label: COVID images come from many hospitals and papers, "
              "normals from one source (RSNA/NIH). The model may partly learn the source.",
              "- No patient IDs; near-duplicates were grouped by picture similarity only.",
              "- Not for children. The applicability check refused every paediatric film we have "
              "outside its fitting data (rates above), but its population term learnt children's "
              "films from one hospital (Guangzhou, Kermany): a child's film from elsewhere may "
              "still get a covid result. The population rules (age, study date) apply where the "
              "file says them.",
              "- Every test image is from the same database (224-px squashed PNG copies). On "
              "full-resolution clinical files the model is outside its data; see the DICOM "
              "table above. The real chest films in `shared/data/dicom/` predate COVID-19 "
              "(966_fixed.dcm: Series Date 2015; RG1_*.dcm: 2004), and the viewer says so "
              "beside any result (`study_date_from`)."],
    "body_region": ["- 'other' has very few training images (abdomen and infant pelvis only).",
                    "- Each non-chest class has one or two sources; the model may partly learn the source."],
    "lungs": ["- Masks follow V7's convention (retro-cardiac region included).",
              "- It has no check of its own: on a non-chest film it may still outline two "
              "'lungs' (about a third of the image on the hip films above). The body-region gate, which runs "
              "first in the app, is what keeps it to chest films."],
}


def _applicability_lines(recipe: Recipe, a: dict[str, Any]) -> list[str]:
    """The applicability check ("outside this model's data"): rule, rates, DICOM table."""
    pos = recipe.positive
    names = {"validation_refused": "own validation split (sets the threshold)",
             "test_refused": "own test split", "external_val_refused": "external_val"}
    lines = ["### Applicability check (outside this model's data)", "",
             f"Output `applicability`: {a['method']}. Fitted on the {a['fitted_on']}; threshold "
             f"{a['threshold']} = {a['threshold_rule']}. A refused image gets no {pos} finding. "
             + (f"Layers: {', '.join(a['layers'])} ({a.get('layers_rule', 'fixed')})."
                if "layers" in a else
                f"Components: k = {a['components']} ({a.get('components_rule', 'fixed')})."), "",
             "| population | rate |", "|---|---:|"]
    for key, v in a["rates"].items():
        lines.append(f"| {names.get(key, key.replace('_', ' '))} | {_pct(v)} |")
    other = a.get("other_population") or {}
    if other:
        lines += ["", f"Other population, {other['name']} ({other['data']}):", "",
                  f"| label | n | refused | reported {pos} after the check | reported {pos} without it |",
                  "|---|---:|---:|---:|---:|"]
        for lab, v in other["by_label"].items():
            lines.append(f"| {lab} | {v['n']} | {_pct(v['refused'])} | {_pct(v[f'reported_{pos}'])} | "
                         f"{_pct(v[f'reported_{pos}_without_check'])} |")
        ks = other.get("k_sweep", {})
        if ks.get("refused_by_k"):
            lines += ["", f"Choice of k: refusal rate of {ks['tuned_on']} at each k's own threshold: "
                      + ", ".join(f"k={c}: {_pct(v)}" for c, v in ks["refused_by_k"].items()) + "."]
        if ks.get("refused_by_layers"):
            lines += ["", f"Choice of layers: refusal rate of {ks['tuned_on']} at each set's own "
                      "threshold: " + ", ".join(f"{c}: {_pct(v)}" for c, v in ks["refused_by_layers"].items())
                      + "."]
    if a.get("dicom"):
        lines += ["", "Every real DICOM file in `shared/data/dicom/` (outside `broken/`), read by the "
                  "viewer's own pipeline (`scan_paths` + `input_from_record`: default window, "
                  "MONOCHROME1 inverted); what this model says on its own (in the app the body-region "
                  "gate runs first):", "",
                  f"| file | verdict | calibrated P({pos}) | applicability score |", "|---|---|---:|---:|"]
        for name, v in a["dicom"].items():
            lines.append(f"| {name} | {v['verdict']} | {v.get('p_positive', '')} | {v.get('applicability', '')} |")
    return lines + [""]


def _gate_outside_lines(ev: dict[str, Any]) -> list[str]:
    """The gate outside its training pool: real DICOM files, then test-only outliers."""
    right = ev.get("dicom_right")
    lines = ["### Outside the training pool first", "",
             "Real DICOM files in `shared/data/dicom/` (outside `broken/`), read by the viewer's own "
             "pipeline (default window, MONOCHROME1 inverted)" + (
                 f": gated right on {right['right']} of {right['readable']} readable files"
                 if right else "") + ". A hip, lower leg or dog's leg is right as 'other' or "
             "'unknown' (no region model runs on it).", "",
             "| file | shows | verdict | right | top class | calibrated conf. | energy |",
             "|---|---|---|---|---|---:|---:|"]
    for name, v in ev["dicom"].items():
        ok = "" if "right" not in v else ("yes" if v["right"] else "**no**")
        lines.append(f"| {name} | {v.get('shows', '')} | {v['verdict']} | {ok} | {v.get('top', '')} | "
                     f"{v.get('confidence', '')} | {v.get('energy', '')} |")
    o = ev["ood_test"]
    by_net = (f" ({o['rejected_by_network']}/{o['n']} by the network alone, without the "
              "colour rule)" if "rejected_by_network" in o else "")
    lines += ["", f"Test-only outliers (scikit-image photographs, noise, blank frames): "
              f"{o['rejected']}/{o['n']} rejected{by_net}.", "",
              "| image | verdict | network alone | colour fraction | top class | calibrated conf. | energy |",
              "|---|---|---|---:|---|---:|---:|"]
    for name, v in o["items"].items():
        lines.append(f"| {name} | {v['verdict']} | {v.get('network', v['verdict'])} | "
                     f"{v.get('colour', '')} | {v['top']} | {v['confidence']} | {v['energy']} |")
    return lines + [""]


def _segmenter_outside_lines(ev: dict[str, Any]) -> list[str]:
    """The segmenter outside its own split: clinical-film look, real DICOM files."""
    lines = ["### Outside the own split first", ""]
    tc = ev.get("test_clinical")
    if tc:
        lines += ["The test images with the clinical-film look on the model's view "
                  "(`training.augment.clinical_look`, seeded per image: range compression, edge "
                  f"enhancement, other windows, shutters, markers): mean Dice {tc['dice_mean']:.4f} ("
                  + ", ".join(f"{s} {v['dice_mean']:.4f}" for s, v in tc["per_source"].items()) + ").", ""]
    if ev.get("dicom"):
        lines += ["Every real DICOM file in `shared/data/dicom/` (outside `broken/`), read by the "
                  "viewer's own pipeline; no reference masks exist for them, so this says what the "
                  "model outputs (in the app it runs only on films the gate calls chest): the mask's "
                  "share of the image and its pieces larger than 1 % of the image (two lungs: 2).", "",
                  "| file | shows | mask share | pieces |", "|---|---|---:|---:|"]
        for name, v in ev["dicom"].items():
            lines.append(f"| {name} | {v.get('shows', '')} | "
                         + (f"{_pct(v['area_fraction'])} | {v['pieces']} |" if "area_fraction" in v
                            else f"{v['verdict']} | |"))
        lines.append("")
    return lines


def write_card(recipe: Recipe, manifest: dict[str, Any], ev: dict[str, Any], out_dir: Path) -> Path:
    mid = recipe.model_id
    fig_dir = out_dir / "cards" / mid
    fig_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# {manifest['name']} (`{mid}` {manifest['version']})", "",
             f"**Intended use:** {manifest['intended_use']}", "",
             f"**Population:** {manifest['population']}.", "",
             ] + ([f"**Study dates:** from {manifest['study_date_from']['date']} "
                   f"({manifest['study_date_from']['why']}); the viewer cautions that a positive "
                   "result on an older film is a false positive.", ""]
                  if manifest.get("study_date_from") else []) + [
             f"**File:** `{manifest['file']}`, ONNX opset {manifest['opset']}, sha256 `{manifest['sha256']}`.", "",
             f"**Input:** {json.dumps(manifest['input'])}", "",
             "Training recipe: `python -m training train " + mid + "` (seed " + str(recipe.seed) + "), then "
             "`python -m training evaluate " + mid + "` and `python -m training export " + mid + "`. "
             "The split (file names only) is `training/splits/" + recipe.dataset + ".csv`: 70/15/15 "
             "train/validation/test, grouped by patient and by near-duplicate picture (32x32 "
             "correlation >= 0.95), so no patient or near-duplicate straddles two splits.", "",
             ] + ([f"History: {recipe.history}.", ""] if recipe.history else []) + (
             ["Test-time augmentation: the exported graph runs the image and its mirror image and "
              "averages their last-block activations (mirrored back) before the head, so the "
              "logits are the mean of both views and Grad-CAM++ from the manifest stays exact. "
              "Every metric below is of this averaged classifier.", ""]
             if manifest.get("test_time_augmentation") else []) + (
             [f"Ensemble: {recipe.members} networks of the same architecture, member *i* trained "
              f"with seed *i* (`python -m training train {mid} --member i`). The exported graph "
              "concatenates their last-block activations and averages their heads, so the logits "
              "are the mean of the members' logits and Grad-CAM++ from the manifest stays exact. "
              "Every metric below is of the ensemble.", ""]
             if recipe.members > 1 else []) + [
             "## Training data", ""]
    for d in manifest["training_data"]:
        extra = f", {d['images']} training images" if d.get("images") else ""
        lines.append(f"- {d['name']}; licence: {d['licence']}{extra}")
    if manifest.get("pretrained_weights"):
        pw = manifest["pretrained_weights"]
        lines += ["", "## Pretrained weights", "",
                  f"- {pw['name']}: `{pw['file']}` from {pw['package']}, loaded by {pw['loader']}; "
                  f"licence: {pw['licence']}.",
                  f"- Why: {pw['why']}.", f"- Adapted: {pw['adapted']}."]
    lines += ["", "## Metrics", ""]
    if "external" in ev:
        e, c = ev["external"], ev["calibration"]
        lines += [f"### External validation first: {e['data']} ({e['n']} images)", "",
                  "The official Kermany test split was collected apart from the train split; this "
                  "half of it chose the checkpoint (per-epoch ROC AUC), the temperature and the "
                  "operating threshold, and is reported here. It was never trained on. The other "
                  "half is the sealed test set; these figures are therefore optimistic by the "
                  "selection on them.", "",
                  "| metric | external_val |", "|---|---:|",
                  f"| ROC AUC | {e['roc_auc']:.4f} |",
                  f"| accuracy at threshold {ev['threshold']} | {_pct(e['accuracy'])} |",
                  f"| sensitivity | {_pct(e['sensitivity'])} |",
                  f"| specificity | {_pct(e['specificity'])} |",
                  f"| balanced accuracy | {_pct(e['balanced_accuracy'])} |",
                  f"| accuracy at 0.5 instead (for reference) | {_pct(e['accuracy_at_0.5'])} |",
                  f"| ECE (15 bins) before -> after temperature {c['temperature']} | "
                  f"{e['ece_before']:.4f} -> {e['ece_after']:.4f} |", "",
                  f"Confusion (rows true {', '.join(recipe.labels)}; columns predicted): {e['confusion']}.", ""]
        figures.reliability_figure(ev["reliability_external_before"], ev["reliability_external_after"],
                                   e["ece_before"], e["ece_after"], fig_dir / "reliability_external.png",
                                   f"{mid} (external_val)")
        figures.roc_figure(ev["roc_external"]["fpr"], ev["roc_external"]["tpr"], e["roc_auc"],
                           fig_dir / "roc_external.png", f"{mid} (external_val)")
        lines += [f"![ROC curve, external_val](cards/{mid}/roc_external.png)",
                  f"![Reliability diagram, external_val](cards/{mid}/reliability_external.png)", ""]
    if ev.get("applicability"):  # outside the training pool too: other population, real DICOM
        lines += _applicability_lines(recipe, ev["applicability"])
    if "external" in ev or ev.get("applicability"):
        lines += ["### Own split" + (" (Kermany train images, patient-grouped)" if "external" in ev
                                     else ""), ""]
    if recipe.task == "segmentation":
        t = ev["test"]
        lines += _segmenter_outside_lines(ev)
        lines += [f"### Own split: test ({t['n']} images, never used for training or checkpoint "
                  "choice)", "", "Dice at each image's own resolution (logits resized back with "
                  "`resize_to_image`, threshold 0.5 on the sigmoid, pixels marked 127 = ignore "
                  "excluded):", "",
                  "| source | n | mean Dice | median | min |", "|---|---:|---:|---:|---:|"]
        for s, v in t["per_source"].items():
            lines.append(f"| {s} | {v['n']} | {v['dice_mean']:.4f} | {v['dice_median']:.4f} | {v['dice_min']:.4f} |")
        lines.append(f"| all | {t['n']} | {t['dice_mean']:.4f} | | |")
        lines += ["", f"Validation mean Dice: {ev['val']['dice_mean']:.4f}.", "",
                  "Caveat: V7 lung masks include the retro-cardiac region and the lung behind the "
                  "diaphragm dome; other datasets (JSRT, Montgomery) outline only the visible lung.", ""]
        figures.dice_figure(t["per_source"], fig_dir / "dice.png", f"{mid}: test Dice per source")
        lines.append(f"![Dice per source](cards/{mid}/dice.png)")
    else:
        t, c = ev["test"], ev["calibration"]
        if recipe.positive is None:  # the gate: real DICOM and outliers before its own split
            lines += _gate_outside_lines(ev) + ["### Own split", ""]
        lines.append(f"Test split: {ev['n_test']} images, never used for training, checkpoint choice, "
                     f"calibration or threshold. Validation: {ev['n_val']} images.")
        lines.append("")
        if recipe.positive:
            lines += ["| metric | test | validation |", "|---|---:|---:|",
                      f"| accuracy (threshold {ev['threshold']} on calibrated P({recipe.positive})) | "
                      f"{_pct(t['accuracy'])} | {_pct(ev['val']['accuracy'])} |",
                      f"| ROC AUC | {t['roc_auc']:.4f} | {ev['val']['roc_auc']:.4f} |",
                      f"| accuracy at 0.5 instead (for reference) | {_pct(t['accuracy_at_0.5'])} | {_pct(ev['val']['accuracy_at_0.5'])} |",
                      f"| sensitivity | {_pct(t['sensitivity'])} | |",
                      f"| specificity | {_pct(t['specificity'])} | |",
                      f"| balanced accuracy | {_pct(t['balanced_accuracy'])} | |", ""]
            lines += [f"Operating threshold {ev['threshold']}: {ev['threshold_rule']}.", ""]
            if t.get("per_source"):
                lines += ["Accuracy per source (test):", ""]
                lines += [f"- {s}: {_pct(v['accuracy'])} (n={v['n']})" for s, v in t["per_source"].items()]
                lines.append("")
            figures.roc_figure(ev["roc_test"]["fpr"], ev["roc_test"]["tpr"], t["roc_auc"],
                               fig_dir / "roc.png", f"{mid} (test)")
        else:
            ood = ev["ood"]
            lines += [f"Top-class accuracy {_pct(t['accuracy'])}, balanced accuracy "
                      f"{_pct(t['balanced_accuracy'])}; with the OOD rule (answers \"unknown\" count "
                      f"as wrong) {_pct(t['gate_accuracy'])}; {_pct(t['rejected_as_unknown'])} of test "
                      "radiographs were rejected as unknown.", "",
                      f"OOD rule: unknown if energy = -logsumexp(logits) > {ood['threshold']} "
                      + "".join(f"({c} as top class: > {v}) " for c, v in ood.get("class_thresholds", {}).items())
                      + f"({ood['fitted_on']}) or calibrated top-class probability < {ood['confidence_floor']}"
                      + (f"; before the network, unknown if more than {_pct(ood['max_colour_fraction'])} of "
                         "the pixels are clearly coloured (radiographs are greyscale)."
                         if "max_colour_fraction" in ood else "."), "",
                      "| class | n | accuracy | rejected as unknown |", "|---|---:|---:|---:|"]
            for cl, v in t["per_class"].items():
                lines.append(f"| {cl} | {v['n']} | {_pct(v['accuracy'])} | {_pct(v['rejected_as_unknown'])} |")
            lines += ["", "| class/source | n | accuracy | with OOD rule |", "|---|---:|---:|---:|"]
            for s, v in t["per_source"].items():
                lines.append(f"| {s} | {v['n']} | {_pct(v['accuracy'])} | {_pct(v['gate_accuracy'])} |")
            lines.append("")
        lines += [f"Calibration: temperature {c['temperature']} fitted on {c['fitted_on']}; ECE (15 bins) "
                  f"there {c['ece_before']:.4f} -> {c['ece_after']:.4f}, test "
                  f"{c['test_ece_before']:.4f} -> {c['test_ece_after']:.4f}.", ""]
        figures.confusion_figure(t["confusion"], list(recipe.labels), fig_dir / "confusion.png",
                                 f"{mid}: test confusion (argmax / threshold)")
        figures.reliability_figure(ev["reliability_test_before"], ev["reliability_test_after"],
                                   c["test_ece_before"], c["test_ece_after"], fig_dir / "reliability.png",
                                   f"{mid} (test)")
        lines += [f"![Confusion matrix](cards/{mid}/confusion.png)",
                  f"![Reliability diagram](cards/{mid}/reliability.png)"]
        if recipe.positive:
            lines.append(f"![ROC curve](cards/{mid}/roc.png)")
    lines += ["", "## Limitations", ""]
    lines += LIMITATIONS[mid]
    lines += ["- Research use, not for diagnosis.", ""]
    path = out_dir / f"{mid}.md"
    path.write_text("\n".join(lines))
    return path
