"""The one retry loop: waits, what is retried, what is told before each wait."""
from __future__ import annotations

import pytest

from nemo_coreward.retry import call_with_retries


class Transient(OSError):
    pass


def test_waits_double_from_backoff_and_are_capped():
    waits, told, calls = [], [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 5:
            raise Transient(f"down {len(calls)}")
        return "ok"

    result = call_with_retries(flaky, retry_on=Transient, retries=4, backoff_s=0.5,
                               backoff_max_s=1.5, sleep=waits.append,
                               on_retry=lambda e, n, w: told.append((str(e), n, w)))
    assert result == "ok"
    assert waits == [0.5, 1.0, 1.5, 1.5]
    assert told == [("down 1", 1, 0.5), ("down 2", 2, 1.0), ("down 3", 3, 1.5),
                    ("down 4", 4, 1.5)]


def test_last_error_is_raised_unchanged_when_retries_run_out():
    waits, calls = [], []

    def down() -> None:
        calls.append(1)
        raise Transient("still down")

    with pytest.raises(Transient, match="still down"):
        call_with_retries(down, retry_on=Transient, retries=2, backoff_s=1, backoff_max_s=9,
                          sleep=waits.append)
    assert len(calls) == 3 and waits == [1, 2]


def test_other_errors_are_not_retried():
    calls = []

    def refused() -> None:
        calls.append(1)
        raise ValueError("400")

    with pytest.raises(ValueError):
        call_with_retries(refused, retry_on=Transient, retries=5, backoff_s=1,
                          backoff_max_s=1, sleep=lambda s: None)
    assert len(calls) == 1
