"""PyInstaller entry script for both executables of the bundle (``radview`` and ``radview-cli``).

Both run the same code (``viewer.__main__.main``); they differ only in PyInstaller's ``console``
flag, which matters on Windows: ``radview.exe`` is a windowed (GUI-subsystem) program that opens
no console window, ``radview-cli.exe`` is a console program whose output a terminal or a script
can read (``radview-cli analyze ...``, ``--self-test``, ``--version``).
"""

from __future__ import annotations

import multiprocessing
import os
import sys

_CLI_WORDS = ("analyze", "--self-test", "--version", "--help", "-h")


def _attach_parent_console() -> None:
    """Windowed Windows build given a CLI command: print into the console it was started from."""
    if os.name != "nt" or not any(a in _CLI_WORDS for a in sys.argv[1:]):
        return
    try:
        import ctypes

        if ctypes.windll.kernel32.AttachConsole(-1):  # ATTACH_PARENT_PROCESS
            sys.stdout = open("CONOUT$", "w", encoding="utf-8", errors="replace")  # noqa: SIM115
            sys.stderr = sys.stdout
    except Exception:  # noqa: BLE001 - no console to attach: output goes nowhere, as before
        pass


if __name__ == "__main__":
    multiprocessing.freeze_support()  # process pools re-enter this script in their children
    if getattr(sys.stdout, "name", "") == os.devnull:
        _attach_parent_console()
    from viewer.__main__ import main

    sys.exit(main())
