"""What the fuzz tests share: example counts, measured calls, and message mutations.

Every target counts the messages it was given, the worst time one took and the worst memory one
allocated (Python allocations, ``tracemalloc``), and what each became; the suite prints the tally
at the end. ``FUZZ_EXAMPLES`` sets the examples per target: 40 by default, a third of what it was,
so that the suite stays within ten minutes on two cores (every run draws new examples:
``database=None``); ``FUZZ_EXAMPLES=2000`` is the deep run, for a change to a parser or a client.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
"""Settings of every fuzz test."""


@dataclass
class Tally:
    """What one fuzz target tried and saw."""

    name: str
    messages: int = 0
    worst_s: float = 0.0
    worst_bytes: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        top = ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common(4))
        return (
            f"{self.name:34s} {self.messages:8d} {self.worst_s * 1000:9.1f} "
            f"{self.worst_bytes / 1e6:9.2f}  {top}"
        )


TALLIES: dict[str, Tally] = {}


def measure(name: str, call: Callable[[], Any], allowed: tuple[type[BaseException], ...]) -> Any:
    """Run one message through ``call``; count it; re-raise anything not ``allowed``.

    Returns:
        The result, or the allowed exception (returned, not raised).
    """
    tally = TALLIES.setdefault(name, Tally(name))
    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    try:
        result: Any = call()
        outcome = "ok"
    except allowed as exc:
        result = exc
        outcome = getattr(exc, "reason", None) or type(exc).__name__
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] - base
        if started_tracing:
            tracemalloc.stop()
        tally.messages += 1
        tally.worst_s = max(tally.worst_s, elapsed)
        tally.worst_bytes = max(tally.worst_bytes, peak)
    tally.outcomes[outcome] += 1
    return result


# ------------------------------------------------------------------------------ strategies

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value (NaN and infinities included, as Python's json writes them)."""


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """A JSON document with some of its values replaced, removed or added, at any depth."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 4))):
        node = document
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            child = node[draw(st.sampled_from(keys))]
            if not isinstance(child, dict | list) or not child:
                break
            node = child
        if isinstance(node, dict):
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "add" or not node:
                node[draw(st.text(max_size=12))] = draw(JSON)
            else:
                key = draw(st.sampled_from(sorted(node)))
                if action == "remove":
                    del node[key]
                else:
                    node[key] = draw(JSON)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(JSON)
    return document


@st.composite
def mangled(draw: st.DrawFn, data: bytes) -> bytes:
    """Bytes with a few flips, insertions, deletions or a truncation."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        if not out:
            break
        at = draw(st.integers(0, len(out) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite"]))
        if action == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del out[at : at + draw(st.integers(1, 64))]
        elif action == "truncate":
            del out[at:]
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            out[at : at + len(chunk)] = chunk
    return bytes(out)
