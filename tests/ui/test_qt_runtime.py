"""Guards against a Qt binding regression that crashed the viewer.

PySide6 6.12.0 released one reference to ``True`` too many on every emission of a Python-defined
signal to a Python slot; on Python 3.11 (where bools are not immortal) the interpreter aborted
with "bool_dealloc" after a few hundred emissions. pyproject pins a release without it.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    sig_value_changed = Signal(str)


def test_signal_emission_keeps_bool_refcounts() -> None:
    emitter = _Emitter()
    received: list[str] = []
    emitter.sig_value_changed.connect(received.append)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for _ in range(300):
        emitter.sig_value_changed.emit("x")
    after = sys.getrefcount(True), sys.getrefcount(False)
    assert len(received) == 300
    assert abs(after[0] - before[0]) < 20 and abs(after[1] - before[1]) < 20, (before, after)
