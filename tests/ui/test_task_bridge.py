"""TaskBridge: results arrive on the GUI thread, stale results are dropped, cancel works,
failures become signals, shutdown joins the workers."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from PySide6.QtCore import QThread

from viewer.services.tasks import CancelToken
from viewer.ui.task_bridge import TaskBridge, TaskRequest


@pytest.fixture
def bridge() -> Any:
    b = TaskBridge(max_workers=2)
    yield b
    b.shutdown()


def _job(value: int, *, cancel: CancelToken, progress: Any) -> tuple[int, bool]:
    progress(1, 1)
    return value * 2, threading.current_thread() is threading.main_thread()


def test_result_delivered_on_gui_thread(qtbot: Any, bridge: TaskBridge) -> None:
    received: list[tuple[Any, bool]] = []
    bridge.sig_task_finished.connect(
        lambda ch, rid, res: received.append((res, QThread.currentThread() is bridge.thread()))
    )
    with qtbot.waitSignal(bridge.sig_task_finished, timeout=5000) as blocker:
        rid = bridge.submit(TaskRequest("x", _job, (21,)))
    assert blocker.args[:2] == ["x", rid]
    (result, on_gui), = received
    assert result == (42, False)  # computed on a worker
    assert on_gui  # delivered on the thread that owns the bridge


def test_stale_result_dropped_and_cancel(qtbot: Any, bridge: TaskBridge) -> None:
    gate = threading.Event()

    def slow(*, cancel: CancelToken, progress: Any) -> str:
        gate.wait(5)
        cancel.raise_if_cancelled()
        return "old"

    finished: list[Any] = []
    bridge.sig_task_finished.connect(lambda ch, rid, res: finished.append(res))
    with qtbot.waitSignal(bridge.sig_task_cancelled, timeout=5000) as cancelled:
        first = bridge.submit(TaskRequest("img", slow))
        with qtbot.waitSignal(bridge.sig_task_finished, timeout=5000):
            second = bridge.submit(TaskRequest("img", _job, (1,)))
        gate.set()
    assert cancelled.args == ["img", first]
    assert finished == [(2, False)]
    assert not bridge.is_current("img", first) and bridge.is_current("img", second)


def test_failure_becomes_signal(qtbot: Any, bridge: TaskBridge) -> None:
    from viewer.dicom.load import LoadError

    def bad(*, cancel: CancelToken, progress: Any) -> None:
        raise LoadError("cannot decode", advice="install a decoder")

    with qtbot.waitSignal(bridge.sig_task_failed, timeout=5000) as blocker:
        bridge.submit(TaskRequest("x", bad))
    assert blocker.args[2] == "cannot decode install a decoder"
    assert bridge.pending() == 0


def test_a_library_exception_text_never_reaches_the_user(qtbot: Any, bridge: TaskBridge) -> None:
    """Issue 15: pydicom's messages quote element values; the user sees a category."""
    class Boom(ValueError):
        message = "Invalid value for VR PN: 'Secret^Patient'"

    def bad(*, cancel: CancelToken, progress: Any) -> None:
        raise Boom("Invalid value for VR PN: 'Secret^Patient'")

    with qtbot.waitSignal(bridge.sig_task_failed, timeout=5000) as blocker:
        bridge.submit(TaskRequest("x", bad))
    assert "Secret" not in blocker.args[2] and "malformed or unsupported data" in blocker.args[2]


def test_shutdown_cancels_and_joins(qtbot: Any) -> None:
    bridge = TaskBridge(max_workers=1)
    started = threading.Event()

    def wait_for_cancel(*, cancel: CancelToken, progress: Any) -> None:
        started.set()
        cancel.wait(10)
        cancel.raise_if_cancelled()

    bridge.submit(TaskRequest("a", wait_for_cancel))
    queued = bridge.submit(TaskRequest("b", wait_for_cancel))
    assert started.wait(5)
    bridge.shutdown()  # returns only once the worker has stopped
    assert not [t for t in threading.enumerate() if t.name.startswith("radview-io")]
    assert queued > 0 and bridge.submit(TaskRequest("c", wait_for_cancel)) == 0


def test_cancel_before_start_is_reported(qtbot: Any) -> None:
    bridge = TaskBridge(max_workers=1)
    gate = threading.Event()

    def block(*, cancel: CancelToken, progress: Any) -> None:
        gate.wait(5)

    try:
        bridge.submit(TaskRequest("busy", block))
        queued = bridge.submit(TaskRequest("scan", _job, (1,)))  # waits behind "busy"
        with qtbot.waitSignal(bridge.sig_task_cancelled, timeout=5000) as blocker:
            bridge.cancel(queued)
        assert blocker.args == ["scan", queued]
        assert bridge.pending() == 1  # only the blocking job remains
    finally:
        gate.set()
        bridge.shutdown()
