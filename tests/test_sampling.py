"""The loop guard (incremental detection agrees with a brute-force definition) and stop strings."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from askgpt.runtime.engine.sampling import LoopDetector, LoopGuard, SamplingConfig
from askgpt.runtime.prompting.generate import StopFilter


def looped_bruteforce(tokens: list[int], guard: LoopGuard) -> bool:
    """The definition: the tail repeats with some period p <= max_period over
    at least max(min_repeats * p, min_span) tokens."""
    for p in range(1, guard.max_period + 1):
        span = max(guard.min_repeats * p, guard.min_span)
        if len(tokens) < span:
            continue
        tail = tokens[-span:]
        if all(tail[i] == tail[i - p] for i in range(p, span)):
            return True
    return False


def first_loop_index(tokens: list[int], guard: LoopGuard) -> int | None:
    det = LoopDetector(guard)
    for i, t in enumerate(tokens):
        if det.push(t):
            return i
    return None


small_guard = st.builds(LoopGuard, max_period=st.integers(1, 8), min_repeats=st.integers(2, 5),
                        min_span=st.integers(1, 20))


@settings(max_examples=300)
@given(tokens=st.lists(st.integers(0, 3), max_size=80), guard=small_guard)
def test_incremental_detector_matches_definition(tokens: list[int], guard: LoopGuard) -> None:
    det = LoopDetector(guard)
    for i, t in enumerate(tokens):
        assert det.push(t) == looped_bruteforce(tokens[: i + 1], guard), (tokens[: i + 1], guard)


@given(prefix=st.lists(st.integers(0, 1000), max_size=30),
       unit=st.lists(st.integers(0, 1000), min_size=1, max_size=64))
def test_any_unit_repeated_enough_is_caught(prefix: list[int], unit: list[int]) -> None:
    guard = LoopGuard()
    copies = max(guard.min_repeats, -(-guard.min_span // len(unit)))
    assert first_loop_index(prefix + unit * copies, guard) is not None


@given(st.lists(st.integers(), unique=True, max_size=200))
def test_text_without_repeats_never_trips(tokens: list[int]) -> None:
    assert first_loop_index(tokens, LoopGuard()) is None


def test_short_legitimate_repeats_pass() -> None:
    # "- - -" style: 8 copies of a 1-token unit is under the 32-token minimum span.
    assert first_loop_index([5] * 31, LoopGuard()) is None
    assert first_loop_index([5] * 32, LoopGuard()) == 31


@pytest.mark.parametrize("kwargs", [{"max_period": 0}, {"min_repeats": 1}, {"min_span": 0}])
def test_guard_rejects_nonsense(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        LoopGuard(**kwargs)


def test_sampling_rejects_negative_temperature() -> None:
    with pytest.raises(ValueError):
        SamplingConfig(temperature=-0.1)


# --- stop strings ------------------------------------------------------------

def run_filter(pieces: list[str], stops: tuple[str, ...]) -> tuple[str, bool]:
    f = StopFilter(stops)
    out = []
    for piece in pieces:
        text, stopped = f.feed(piece)
        out.append(text)
        if stopped:
            return "".join(out), True
    return "".join(out) + f.flush(), False


@settings(max_examples=300)
@given(text=st.text(alphabet="abI\nnput:", max_size=60), cuts=st.lists(st.integers(0, 60), max_size=8),
       stop=st.sampled_from(["\nInput:", "ab", "a", "\n\n"]))
def test_stop_filter_matches_cutting_the_whole_text(text: str, cuts: list[int], stop: str) -> None:
    """However the stream is split into pieces, the output is the text up to the first stop."""
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in pairwise(bounds)]
    out, stopped = run_filter(pieces, (stop,))
    idx = text.find(stop)
    assert stopped == (idx >= 0)
    assert out == (text[:idx] if idx >= 0 else text)


def test_stop_filter_holds_back_only_possible_prefixes() -> None:
    f = StopFilter(("\nInput:",))
    assert f.feed("fromage\nIn") == ("fromage", False)  # "\nIn" might start the stop
    assert f.feed("deed") == ("\nIndeed", False)  # it did not
    assert f.feed("\nInput: x") == ("", True)
