"""Retry policy of every task that calls a service: only what retrying fixes, never too soon.

The clients in ``followup/`` never retry (see :mod:`followup.http`); the Prefect task that calls
them does, where the UI shows every attempt. The decision is made on the exception's class:

* :class:`~followup.exceptions.ServiceUnavailable` (unreachable, timeouts of reads, 429, 503,
  5xx of reads, a corrupted download): retried.
* :class:`~followup.exceptions.UncertainOutcome`: never retried; a creating call that may have
  arrived is looked up, not resent (``followup.observing.submit_once``,
  ``followup.reporting.delivery.deliver_once``).
* :class:`~followup.exceptions.RequestRejected`, :class:`~followup.exceptions.AuthenticationError`,
  :class:`~followup.exceptions.NotFound`, anything else (bugs): never retried.

``Retry-After`` is honoured: the wait before a retry is the larger of the task's delay and the
``retry_after`` of the :class:`ServiceUnavailable` that failed the attempt. A server that asks for
more than :data:`MAX_RETRY_AFTER_S` is not waited for inside a run: the task fails at once, with
the wait in its message.

Prefect 3.9 computes a retry's delay as ``task.retry_delay_seconds[attempt]`` right after
``retry_condition_fn`` accepted the failure, in the same thread (``handle_retry`` in
``prefect/task_engine.py``). :func:`retry_if_unavailable` therefore leaves the failure's
``retry_after`` for that thread, and :class:`RetryDelays` (a list, as Prefect requires) takes it
when Prefect reads the delay. The task run shows ``AwaitingRetry`` with the real scheduled time.

Example:
    >>> @task(**SERVICE_RETRIES)  # doctest: +SKIP
    ... def refresh(portal): ...
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any, SupportsIndex, overload

from followup.exceptions import ServiceUnavailable

__all__ = [
    "DELAY_SCALE_ENV",
    "MAX_RETRY_AFTER_S",
    "RETRY_DELAYS_S",
    "SERVICE_RETRIES",
    "RetryDelays",
    "retry_if_unavailable",
    "should_retry",
]

MAX_RETRY_AFTER_S = 300.0
"""The longest ``Retry-After`` (seconds) a task waits for; beyond it the task fails at once."""

_pending = threading.local()


class RetryDelays(list[float]):
    """Retry delays (seconds) that stretch to the ``Retry-After`` of the failure being retried.

    Pass an instance as a task's ``retry_delay_seconds``; Prefect reads item ``k`` for the
    ``k``-th retry. When :func:`retry_if_unavailable` has just accepted a failure that carries
    ``retry_after``, the item read is ``max(delay, retry_after)``.
    """

    @overload
    def __getitem__(self, index: SupportsIndex) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> list[float]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> float | list[float]:
        value = super().__getitem__(index)
        if isinstance(index, slice):
            return list(value)  # type: ignore[arg-type]
        asked = getattr(_pending, "retry_after", None)
        _pending.retry_after = None
        return value if asked is None else max(float(value), asked)  # type: ignore[arg-type]


def _delays(values: Iterable[float]) -> RetryDelays:
    return RetryDelays(float(v) for v in values)


DELAY_SCALE_ENV = "FOLLOWUP_RETRY_DELAY_SCALE"
"""Environment variable that multiplies every retry delay (default 1; read at import)."""


def delay_scale(env: dict[str, str] | None = None) -> float:
    """The factor of the retry delays: ``FOLLOWUP_RETRY_DELAY_SCALE``, else 1.

    A stack against the sandbox, whose faults pass after a count and not after a time, may
    shorten the waits (the fault tests use 0.1); a ``Retry-After`` is honoured all the same.

    Raises:
        ValueError: The value is not a positive number.
    """
    raw = (os.environ if env is None else env).get(DELAY_SCALE_ENV, "").strip()
    scale = float(raw) if raw else 1.0
    if not scale > 0:
        raise ValueError(f"{DELAY_SCALE_ENV} must be positive, not {raw!r}")
    return scale


RETRY_DELAYS_S = _delays(d * delay_scale() for d in [2, 5, 10, 30, 60, 120])
"""Growing delays: a brief outage passes in seconds, a throttled API needs a minute. Six retries
(at most about four minutes of waiting): the clients no longer retry by themselves. Multiplied
by :func:`delay_scale`."""


def should_retry(error: BaseException) -> bool:
    """True when retrying the failed call can help.

    That is a :class:`ServiceUnavailable` whose ``retry_after`` (if any) is at most
    :data:`MAX_RETRY_AFTER_S`.
    """
    if not isinstance(error, ServiceUnavailable):
        return False
    return error.retry_after is None or error.retry_after <= MAX_RETRY_AFTER_S


def retry_if_unavailable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry :class:`ServiceUnavailable`, nothing else.

    Also leaves the failure's ``retry_after`` for :class:`RetryDelays`, so that the retry waits
    at least as long as the service asked.
    """
    _pending.retry_after = None
    try:
        state.result()
    except Exception as error:  # the task's failure, re-raised by its Failed state
        retry = should_retry(error)
        if retry and isinstance(error, ServiceUnavailable):
            _pending.retry_after = error.retry_after
        return retry
    return False


SERVICE_RETRIES: dict[str, Any] = {
    "retries": len(RETRY_DELAYS_S),
    "retry_delay_seconds": RETRY_DELAYS_S,
    "retry_condition_fn": retry_if_unavailable,
}
"""Keyword arguments of ``@task`` for every task that calls a service."""
