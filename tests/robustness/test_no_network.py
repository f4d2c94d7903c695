"""The network promise, proven by syscall tracing (issue 15): the window analysing a folder for
60 s and a long `radview analyze` run under `strace -f`, and neither may create, connect or send
on any socket that is not AF_UNIX. Python-level checks (audit hooks, fd counts) cannot see
sockets opened by native threads; onnxruntime 1.29+ resolved a telemetry host that way.
viewer/offline.py's seccomp filter is tested on its own here too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, shared_data_dir

STRACE = shutil.which("strace")
_CALLS = "socket,socketpair,connect,bind,sendto,sendmsg,sendmmsg"
_UNIX = ("AF_UNIX", "AF_LOCAL", "1")


def _need_strace() -> str:
    if STRACE is None:
        if os.environ.get("CI"):
            pytest.fail("strace is required in CI (.ci/run installs it)")
        pytest.skip("strace is not installed (apt-get install strace)")
    return STRACE


def network_calls(log_text: str) -> list[str]:
    """strace lines that create or use a socket of a family other than AF_UNIX (attempts
    refused by the seccomp filter count too: nothing may even try)."""
    bad = []
    for line in log_text.splitlines():
        m = re.search(r"\b(socket|socketpair)\((AF_\w+|\d+)", line)
        if m and m.group(2) not in _UNIX:
            bad.append(line)
            continue
        m = re.search(r"\b(connect|bind|sendto|sendmsg|sendmmsg)\(\d+, .*?sa_family=(AF_\w+)", line)
        if m and m.group(2) not in _UNIX:
            bad.append(line)
    return bad


def test_network_calls_parser() -> None:
    log = "\n".join([
        '12 socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0) = 3',
        '12 connect(3, {sa_family=AF_UNIX, sun_path="/tmp/.X11-unix/X0"}, 20) = 0',
        '13 socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC|SOCK_NONBLOCK, IPPROTO_IP) = -1 EACCES (Permission denied)',
        '14 connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.1")}, 16) = 0',
        '15 sendto(5, "abc", 3, MSG_NOSIGNAL, {sa_family=AF_INET6, sin6_port=htons(53)}, 28) = 3',
    ])
    assert [ln.split()[0] for ln in network_calls(log)] == ["13", "14", "15"]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "CI")}
    env.update(HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "home" / ".config"),
               XDG_DATA_HOME=str(tmp / "home" / ".local" / "share"),
               RADVIEW_LOG_DIR=str(tmp / "logs"), QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=str(REPO_ROOT))
    (tmp / "home").mkdir(parents=True, exist_ok=True)
    return env


def _traced(cmd: list[str], tmp: Path, timeout: float) -> tuple[subprocess.CompletedProcess[str], str, float]:
    log = tmp / "strace.log"
    t0 = time.monotonic()
    done = subprocess.run([_need_strace(), "-f", "-qq", "-e", f"trace={_CALLS}", "-o", str(log), *cmd],
                          env=_env(tmp), capture_output=True, text=True, timeout=timeout)
    return done, log.read_text(errors="replace"), time.monotonic() - t0


def _images(folder: Path, n: int, distinct: int = 20) -> Path:
    """``n`` PNG files: ``distinct`` different pictures, the rest hard links to them (cheap
    to make, and each is still a file of its own to scan, decode and analyse)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    base = (120 + 60 * np.sin(xx / 25.0) * np.cos(yy / 31.0)).astype(np.float32)
    for i in range(n):
        target = folder / f"img{i:05d}.png"
        if i < distinct:
            img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(target), img)
        else:
            os.link(folder / f"img{i % distinct:05d}.png", target)
    return folder


def _check_home(tmp: Path) -> None:
    left = [str(p.relative_to(tmp / "home")) for p in (tmp / "home").rglob("*")
            if "Microsoft" in p.parts]
    assert left == [], f"a library wrote telemetry state: {left}"


@pytest.mark.slow
def test_long_analyze_opens_no_network_socket(tmp_path: Path) -> None:
    """`radview analyze` over a folder for well past the 10-15 s after which onnxruntime's
    telemetry threads started resolving their host (1.29-1.32)."""
    # Generated pictures are refused by the gate quickly (~4 ms each), so many keep the
    # sessions alive; real chest films (read in place) run every model.
    folder = _images(tmp_path / "in", 8000)
    inputs = [str(folder)]
    for sub in ("dicom", "pneumonia/external_val"):
        real = shared_data_dir() / sub
        if real.is_dir():
            inputs.append(str(real))
    done, log, wall = _traced([sys.executable, "-m", "viewer", "analyze", *inputs, "--out",
                               str(tmp_path / "out" / "r.csv"), "--workers", "1", "--threads", "1"],
                              tmp_path, timeout=600)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert wall > 20, f"the run must outlive onnxruntime's telemetry delay (took {wall:.1f} s)"
    assert network_calls(log) == []
    _check_home(tmp_path)
    support = (tmp_path / "logs" / "radview.log").read_text()
    assert "network sockets denied (seccomp)" in support
    assert "analyze done:" in support


@pytest.mark.slow
def test_window_analysing_a_folder_for_60_s_opens_no_network_socket(tmp_path: Path) -> None:
    folder = _images(tmp_path / "in", 60)
    settings = tmp_path / "radview.ini"
    settings.write_text("[ai]\nauto_analyse=true\n")
    env_extra = {"RADVIEW_QUIT_AFTER_S": "60"}
    os.environ.update(env_extra)
    try:
        done, log, wall = _traced([sys.executable, "-m", "viewer", "-v", "--settings", str(settings),
                                   "--cache-dir", str(tmp_path / "cache"), str(folder)],
                                  tmp_path, timeout=300)
    finally:
        for k in env_extra:
            os.environ.pop(k, None)
    assert done.returncode == 0, done.stderr[-3000:]
    assert wall >= 60
    assert network_calls(log) == []
    _check_home(tmp_path)
    support = (tmp_path / "logs" / "radview.log").read_text()
    assert "start gui" in support and "network sockets denied (seccomp)" in support
    assert "session " in support  # the models ran in the window


_PROBE = r"""
import socket, subprocess, sys, threading
from viewer.offline import deny_network_sockets
assert deny_network_sockets() and deny_network_sockets()
out = []
for fam in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK):
    try:
        socket.socket(fam, socket.SOCK_DGRAM)
        out.append("open")
    except PermissionError:
        out.append("denied")
socket.socket(socket.AF_UNIX).close()
a, b = socket.socketpair()
def later():
    try:
        socket.socket(socket.AF_INET)
        out.append("thread-open")
    except PermissionError:
        out.append("thread-denied")
t = threading.Thread(target=later); t.start(); t.join()
child = subprocess.run([sys.executable, "-c", "import socket\ntry:\n socket.socket()\n print('open')\nexcept PermissionError:\n print('denied')"], capture_output=True, text=True).stdout.strip()
out.append("child-" + child)
print(",".join(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp is Linux-only")
def test_seccomp_filter_denies_every_network_family_but_keeps_unix_sockets() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RADVIEW_ALLOW_NETWORK", None)
    env.pop("DISPLAY", None)
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "denied,denied,denied,thread-denied,child-denied"


def test_no_filter_for_an_x_display_over_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    from viewer import offline

    for display, tcp in ((":0", False), ("unix:0", False), ("localhost:10.0", True),
                         ("host.example:0", True), ("", False)):
        monkeypatch.setenv("DISPLAY", display)
        assert offline.tcp_display() is tcp, display
