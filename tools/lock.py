"""Refresh the hashed dependency locks in requirements/ from pyproject's ranges (`make lock`).

Every environment the Makefile and the CI workflows build installs from one of these locks with
``pip install --no-deps --require-hashes -r``, so a fresh machine gets exactly what was tested.
Run this on purpose (after `make test-latest` says the newest releases pass, or to take a fix),
review the diff of requirements/, run `make test`, and commit the locks with the change.

The locks are made by uv (``uv pip compile --generate-hashes``), pinned below and installed
into a throwaway venv (.venv-lock/), from PyPI. torch is the CPU build: PyPI's Linux torch
wheel is the CUDA build (several GB), so the dev and train locks take torch from the local
wheel folder pip is configured with (``pip config get global.find-links``; on our machines
/opt/wheels holds torch-2.13.0+cpu) and record that file's hash.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
UV_VERSION = "0.13.9"
LOCK_VENV = ROOT / ".venv-lock"
PYTHON = "3.11"
LINUX = "x86_64-manylinux_2_34"  # PySide6 6.11 wheels need glibc 2.34 (Debian 12, Ubuntu 22.04)

# lock file -> (inputs, extras, platform or "universal", needs the local torch wheel)
LOCKS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str, bool]] = {
    # make run / make test / make dist: the dev venv (GPU onnxruntime, tests, training smoke).
    "dev.lock": (("pyproject.toml", "requirements/build.in"), ("gpu", "dev", "train"), LINUX, True),
    # make dist-cpu and the bundle workflows' CPU flavour (Linux and Windows).
    "cpu.lock": (("pyproject.toml", "requirements/build.in", "requirements/bundle.in"), ("cpu",),
                 "universal", False),
    # The Windows workflow's GPU flavour.
    "gpu-bundle.lock": (("pyproject.toml", "requirements/build.in", "requirements/bundle.in"), ("gpu",),
                        "universal", False),
    # Training only (python -m training on a machine without the dev tools).
    "train.lock": (("pyproject.toml", "requirements/build.in"), ("train",), LINUX, True),
}


def _uv() -> Path:
    uv = LOCK_VENV / ("Scripts" if os.name == "nt" else "bin") / "uv"
    if not uv.exists():
        venv.create(LOCK_VENV, with_pip=True)
        pip = LOCK_VENV / ("Scripts" if os.name == "nt" else "bin") / "pip"
        subprocess.run([str(pip), "install", "-q", "--disable-pip-version-check",
                        f"uv=={UV_VERSION}"], check=True)
    return uv


def _find_links() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"],
                         capture_output=True, text=True)
    return [p for p in out.stdout.split() if Path(p).is_dir()] if out.returncode == 0 else []


def main() -> int:
    uv = _uv()
    links = _find_links()
    for name, (inputs, extras, platform, torch) in LOCKS.items():
        cmd = [str(uv), "pip", "compile", *inputs, "--python-version", PYTHON,
               "--generate-hashes", "--no-header", "--quiet", "-o", f"requirements/{name}"]
        for extra in extras:
            cmd += ["--extra", extra]
        cmd += ["--universal"] if platform == "universal" else ["--python-platform", platform]
        if torch:
            if not links:
                print(f"{name}: no local wheel folder (pip config global.find-links) with the "
                      "CPU torch; refusing to lock PyPI's CUDA build", file=sys.stderr)
                return 1
            for link in links:
                cmd += ["--find-links", link]
        print("+", " ".join(cmd[1:]))
        subprocess.run(cmd, cwd=ROOT, check=True)
    # The Grad-CAM++ test reference, without its torchvision dependency (tests/inference).
    cmd = [str(uv), "pip", "compile", "requirements/gradcam-ref.in", "--no-deps", "--python-version",
           PYTHON, "--generate-hashes", "--no-header", "--quiet", "-o", "requirements/gradcam-ref.lock"]
    print("+", " ".join(cmd[1:]))
    subprocess.run(cmd, cwd=ROOT, check=True)
    for path in sorted(REQ.glob("*.lock")):
        pins = [ln.split(" ")[0] for ln in path.read_text().splitlines() if ln and ln[0].isalnum()]
        print(f"{path.name}: {len(pins)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
