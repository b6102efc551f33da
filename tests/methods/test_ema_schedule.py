"""EmaSchedule (docs/semantics.md §6), on CIFAR-100's L = 391: when the spaced EMA fires, its random intervals, and
its state round trip through a checkpoint."""

from __future__ import annotations

import io

import pytest
import torch

from fastkd.plans.ema import EmaSchedule


def _fire_steps(schedule: EmaSchedule, steps: int) -> list[int]:
    return [step for step in range(1, steps + 1) if schedule.step()]


def test_reference_interval_0_1_updates_every_39_iterations() -> None:
    schedule = EmaSchedule.from_reference(0.1, 391, seed=0)
    assert schedule.interval == 39
    assert _fire_steps(schedule, 400) == list(range(39, 401, 39))


def test_reference_interval_1_updates_once_per_epoch() -> None:
    assert _fire_steps(EmaSchedule.from_reference(1.0, 391), 1200) == [391, 782, 1173]


def test_reference_interval_below_one_batch_never_updates() -> None:
    schedule = EmaSchedule.from_reference(0.001, 391)
    assert schedule.interval == 0
    assert _fire_steps(schedule, 5000) == []


def test_reference_interval_zero_updates_every_step() -> None:
    assert _fire_steps(EmaSchedule.from_reference(0.0, 391), 50) == list(range(1, 51))


def test_reference_random_intervals_lie_in_1_to_157_and_vary() -> None:
    schedule = EmaSchedule.from_reference(501.0, 391, seed=3)
    fired = _fire_steps(schedule, 40000)
    gaps = [b - a for a, b in zip([0] + fired, fired)]
    assert min(gaps) >= 1 and max(gaps) <= 157
    assert len(set(gaps)) > 100  # draws cover most of 1..157
    assert max(gaps) >= 150 and min(gaps) <= 5


def test_schedule_state_dict_round_trip_continues_identically() -> None:
    schedule = EmaSchedule.from_reference(600.0, 391, seed=7)
    _fire_steps(schedule, 1234)
    state = schedule.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = EmaSchedule.from_reference(600.0, 391, seed=99)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert _fire_steps(restored, 5000) == _fire_steps(schedule, 5000)


def test_same_seed_same_random_schedule() -> None:
    first = _fire_steps(EmaSchedule.from_reference(1000.0, 391, seed=1), 3000)
    assert first == _fire_steps(EmaSchedule.from_reference(1000.0, 391, seed=1), 3000)
    assert first != _fire_steps(EmaSchedule.from_reference(1000.0, 391, seed=2), 3000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(interval_iters=None, random_max=None), "exactly one"),
        (dict(interval_iters=5, random_max=3.0), "exactly one"),
        (dict(interval_iters=-1), "interval_iters"),
        (dict(interval_iters=None, random_max=0.0), "random_max"),
    ],
)
def test_schedule_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmaSchedule(**kwargs)
    with pytest.raises(ValueError, match="s >= 0"):
        EmaSchedule.from_reference(-1.0, 391)
