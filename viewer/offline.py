"""A provably offline process: no library may open a network socket.

radview never sends data anywhere. Two layers make that hold for the native code we load as well
as for our own (docs/ROBUSTNESS.md, "No network"):

1. :func:`disable_library_telemetry`, before onnxruntime is imported: ``ORT_DISABLE_TELEMETRY=1``.
   From 1.29 the onnxruntime Linux wheels carry Microsoft's "1DS" telemetry uploader, whose
   threads resolve ``mobile.events.data.microsoft.com`` about 10 s after import and write a
   device id under ``~/.cache/Microsoft``; the variable, read at import, stops both (measured
   with ``strace -f`` on 1.29-1.32; ``onnxruntime.disable_telemetry_events()`` does not).
   pyproject also keeps onnxruntime below 1.29, whose wheels have no uploader at all.
2. :func:`deny_network_sockets`, on Linux (x86_64, aarch64): a seccomp-BPF filter for every
   thread of the process (``SECCOMP_FILTER_FLAG_TSYNC``) and every thread or child started later,
   under which ``socket(2)``/``socketpair(2)`` of any family but ``AF_UNIX`` fail with
   ``EACCES`` (Python raises ``PermissionError``) and ``io_uring_setup(2)`` fails with
   ``ENOSYS`` (io_uring can open sockets without ``socket(2)``). ``AF_UNIX`` stays: X11, Wayland
   and D-Bus use it. Nothing is needed from outside: the BPF program is assembled here and
   installed through ``prctl``/``seccomp`` with ctypes (no libseccomp), so it works in a venv
   and in the PyInstaller bundle.

What the filter cannot do: a daemon reached over ``AF_UNIX`` (nscd, systemd-resolved, D-Bus
services) acts in its own process; the process cannot undo the filter, and programs it starts
(the file manager that Help > Open Log Folder launches) inherit it. A GUI whose X display is
reached over TCP (``DISPLAY=host:N``, e.g. ``ssh -X``) needs ``AF_INET``: there the filter is
not installed and the window says so in the log. ``RADVIEW_ALLOW_NETWORK=1`` skips it (for
debugging; the first layer stays).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys

__all__ = ["deny_network_sockets", "disable_library_telemetry", "network_denied",
           "tcp_display"]

# <linux/prctl.h>, <linux/seccomp.h>, <linux/filter.h>, <linux/audit.h>
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
# struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low 32 bits: the family is an int).
_NR, _ARCH, _ARG0 = 0, 4, 16
_X32_BIT = 0x40000000
_AF_UNIX = 1
# machine -> (AUDIT_ARCH_*, socket, socketpair, io_uring_setup, seccomp) syscall numbers
_ARCHES = {
    "x86_64": (0xC000003E, 41, 53, 425, 317),
    "aarch64": (0xC00000B7, 198, 199, 425, 277),
}
_ARCHES["amd64"], _ARCHES["arm64"] = _ARCHES["x86_64"], _ARCHES["aarch64"]

_state = {"denied": False}


def disable_library_telemetry() -> None:
    """Switch off the telemetry of the native libraries we load (before importing them)."""
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"


def network_denied() -> bool:
    """Whether :func:`deny_network_sockets` succeeded in this process."""
    return _state["denied"]


def tcp_display() -> bool:
    """Whether the X display is reached over the network (``DISPLAY=host:N``)."""
    display = os.environ.get("DISPLAY", "")
    host = display.rsplit(":", 1)[0] if ":" in display else ""
    return bool(host) and host != "unix" and not host.startswith("/")


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def _program(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k), jumps relative. Layout (indices):

    0 load arch; 1 arch != ours -> DENY; 2 load nr; 3 (x86_64) x32 ABI -> DENY;
    then socket/socketpair -> FAMILY, io_uring_setup -> ENOSYS, else ALLOW;
    FAMILY: load args[0]; == AF_UNIX -> ALLOW; DENY; ALLOW; ENOSYS.
    """
    audit_arch, nr_socket, nr_pair, nr_uring, _ = _ARCHES[machine]
    x86 = machine in ("x86_64", "amd64")
    head: list[tuple[int, int | str, int | str, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ_K, 0, "deny", audit_arch),
        (_LD_W_ABS, 0, 0, _NR),
    ]
    if x86:
        head.append((_JGE_K, "deny", 0, _X32_BIT))
    head += [
        (_JEQ_K, "family", 0, nr_socket),
        (_JEQ_K, "family", 0, nr_pair),
        (_JEQ_K, "enosys", 0, nr_uring),
        (_RET_K, 0, 0, _RET_ALLOW),
    ]
    labels = {"family": len(head)}
    body: list[tuple[int, int | str, int | str, int]] = [
        (_LD_W_ABS, 0, 0, _ARG0), (_JEQ_K, "allow", 0, _AF_UNIX)]
    labels["deny"] = labels["family"] + len(body)
    labels["allow"] = labels["deny"] + 1
    labels["enosys"] = labels["allow"] + 1
    tail: list[tuple[int, int | str, int | str, int]] = [
        (_RET_K, 0, 0, _RET_ERRNO | errno.EACCES), (_RET_K, 0, 0, _RET_ALLOW),
        (_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS)]
    out: list[tuple[int, int, int, int]] = []
    for pc, (code, jt, jf, k) in enumerate(head + body + tail):
        rel = [labels[j] - pc - 1 if isinstance(j, str) else j for j in (jt, jf)]
        out.append((code, rel[0], rel[1], k))
    return out


def deny_network_sockets() -> bool:
    """Install the filter for the whole process; ``False`` (never an exception) where it cannot
    be: not Linux, another CPU architecture, a kernel without seccomp, ``RADVIEW_ALLOW_NETWORK``,
    or an X display over TCP. Idempotent."""
    if _state["denied"]:
        return True
    machine = platform.machine().lower()
    if (not sys.platform.startswith("linux") or machine not in _ARCHES
            or os.environ.get("RADVIEW_ALLOW_NETWORK") == "1" or tcp_display()):
        return False
    try:
        insns = [_Insn(c, jt, jf, k & 0xFFFFFFFF) for c, jt, jf, k in _program(machine)]
        array = (_Insn * len(insns))(*insns)
        prog = _Prog(len(insns), ctypes.cast(array, ctypes.POINTER(_Insn)))
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        nr_seccomp = _ARCHES[machine][4]
        libc.syscall.restype = ctypes.c_long
        rc = libc.syscall(ctypes.c_long(nr_seccomp), ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
                          ctypes.c_long(_SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(prog))
        if rc != 0:
            return False
    except (OSError, AttributeError, ValueError):
        return False
    _state["denied"] = True
    return True
