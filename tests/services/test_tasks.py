"""CancelToken semantics across threads."""

from __future__ import annotations

import threading

import pytest

from viewer.services.tasks import Cancelled, CancelToken


def test_token_cancel_and_raise():
    token = CancelToken()
    token.raise_if_cancelled()
    assert not token.cancelled
    token.cancel()
    token.cancel()
    assert token.cancelled
    with pytest.raises(Cancelled):
        token.raise_if_cancelled()


def test_cancel_from_another_thread_wakes_waiter():
    token = CancelToken()
    thread = threading.Thread(target=token.cancel)
    thread.start()
    assert token.wait(timeout=5.0)
    thread.join()
