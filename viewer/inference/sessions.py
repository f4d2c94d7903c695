"""onnxruntime sessions: one per model, shared across threads, CUDA only when it can load.

onnxruntime-gpu lists ``CUDAExecutionProvider`` as available even when the CUDA runtime, cuDNN or
a GPU is missing; asking for it then logs an error and falls back to the CPU. We therefore probe
once (driver library, then a real session) and remember the answer, and tell the user in plain
words which provider runs.
"""

from __future__ import annotations

import ctypes
import os
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)

__all__ = ["SessionInfo", "SessionPool", "session_options", "cuda_status"]

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class SessionInfo:
    """A ready session and the provider that actually runs it."""

    session: ort.InferenceSession
    provider: str
    message: str | None  # user-visible note, e.g. why CUDA is not used


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    """Options we use everywhere: explicit threads, no spinning, sequential execution."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(intra_op_threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads made latency erratic and steal CPU from the GUI (FIELD-NOTES.md).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


_cuda_lock = threading.Lock()
_cuda_answer: tuple[bool, str | None] | None = None


def cuda_status() -> tuple[bool, str | None]:
    """Whether the CUDA provider may be tried, and if not, why (cached per process)."""
    global _cuda_answer
    with _cuda_lock:
        if _cuda_answer is None:
            if os.environ.get("RADVIEW_NO_CUDA"):
                _cuda_answer = (False, "CUDA disabled by RADVIEW_NO_CUDA")
            elif _CUDA not in ort.get_available_providers():
                _cuda_answer = (False, None)  # CPU build: nothing to report
            else:
                try:
                    ctypes.CDLL("libcuda.so.1" if os.name != "nt" else "nvcuda.dll")
                    _cuda_answer = (True, None)
                except OSError:
                    _cuda_answer = (False, "CUDA unavailable (no NVIDIA driver found): running on CPU")
        return _cuda_answer


class SessionPool:
    """Creates each model's session once and shares it (sessions are thread-safe).

    Parameters
    ----------
    intra_op_threads
        Threads per session run; size the inference executor against it.
    prefer_cuda
        Try the CUDA provider when it can load.
    """

    def __init__(self, intra_op_threads: int = 2, *, prefer_cuda: bool = True) -> None:
        self._threads = intra_op_threads
        self._prefer_cuda = prefer_cuda
        self._lock = threading.Lock()
        self._sessions: dict[Path, SessionInfo] = {}

    def get(self, onnx_path: Path) -> SessionInfo:
        """The shared session for an ONNX file, created on first use."""
        key = Path(onnx_path).resolve()
        with self._lock:
            info = self._sessions.get(key)
            if info is None:
                info = self._create(key)
                self._sessions[key] = info
            return info

    def _create(self, path: Path) -> SessionInfo:
        opts = session_options(self._threads)
        message = None
        if self._prefer_cuda:
            can_try, message = cuda_status()
            if can_try:
                try:
                    sess = ort.InferenceSession(str(path), opts, providers=[_CUDA, _CPU])
                    if sess.get_providers()[0] == _CUDA:
                        log.info("session %s: %s (onnxruntime %s)", path.name, _CUDA, ort.__version__)
                        return SessionInfo(sess, _CUDA, None)
                    message = "CUDA provider failed to load (CUDA/cuDNN libraries?): running on CPU"
                except Exception as exc:
                    message = f"CUDA provider failed ({type(exc).__name__}): running on CPU"
        sess = ort.InferenceSession(str(path), session_options(self._threads), providers=[_CPU])
        log.info("session %s: %s, %d intra-op threads (onnxruntime %s)%s", path.name, _CPU,
                 self._threads, ort.__version__, f"; {message}" if message else "")
        return SessionInfo(sess, _CPU, message)

    def messages(self) -> list[str]:
        """Distinct user-visible notes of the sessions created so far (e.g. CUDA fallback)."""
        with self._lock:
            return sorted({i.message for i in self._sessions.values() if i.message})

    def providers(self) -> dict[str, str]:
        """ONNX file name -> provider in use, for a status line."""
        with self._lock:
            return {p.name: i.provider for p, i in self._sessions.items()}
