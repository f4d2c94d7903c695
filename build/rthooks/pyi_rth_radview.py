"""Runtime hook: runs in the frozen program before ``viewer`` is imported.

- The windowed Windows executable has no console: ``sys.stdout``/``sys.stderr`` are ``None``
  and any library that writes to them raises. Point them at ``os.devnull`` so the GUI keeps
  running; command-line use belongs to ``radview-cli`` (see build/radview_main.py, which also
  re-attaches the parent console when the windowed program is given a CLI command).
- onnxruntime-gpu loads the CUDA and cuDNN libraries at run time from the system (PyInstaller
  cannot see them). On Windows, Python 3.8+ no longer searches ``PATH`` for the dependencies of
  extension modules, so add the CUDA ``bin`` folders that the CUDA installer records in
  ``CUDA_PATH`` (and ``CUDNN_PATH``) to the DLL search path. Nothing is done on Linux, where
  ``LD_LIBRARY_PATH``/ldconfig apply as usual.
"""

import os
import sys

if sys.stdout is None or sys.stderr is None:
    _devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives for the process
    sys.stdout = sys.stdout or _devnull
    sys.stderr = sys.stderr or _devnull

if os.name == "nt" and hasattr(os, "add_dll_directory"):
    for _var in ("CUDA_PATH", "CUDNN_PATH"):
        _root = os.environ.get(_var)
        if not _root:
            continue
        for _sub in ("bin", os.path.join("bin", "x64"), os.path.join("bin", "13.0")):
            _dir = os.path.join(_root, _sub)
            if os.path.isdir(_dir):
                try:
                    os.add_dll_directory(_dir)
                except OSError:
                    pass
