"""Interval arithmetic against the spec's worked numbers (spec 4.1, quirk 4)."""

import pytest

from fastkd.data import EpochSampler
from fastkd.methods import plan_online_kd

L_CIFAR100 = 391  # ceil(50000 / 128)


@pytest.mark.parametrize("rate, interval, events, lost", [
    (1.5, 586, 53, 222),
    (0.5, 195, 160, 80),
    (1.0, 391, 80, 0),
    (2.0, 782, 40, 0),
])
def test_cifar100_reference_numbers(rate, interval, events, lost):
    plan = plan_online_kd("spaced_online_kd", "reference", L_CIFAR100, 80, rate)
    assert (plan.interval, plan.replay_events, plan.never_distilled) == (interval, events, lost)
    assert plan.teacher_steps == 31280 and plan.student_steps == 31280 - lost


def test_tiny_imagenet_rate_1_5_loses_391():
    plan = plan_online_kd("spaced_online_kd", "reference", 782, 80, 1.5)
    assert (plan.interval, plan.never_distilled) == (1173, 391)


def test_rate_below_one_iteration_is_online():
    plan = plan_online_kd("spaced_online_kd", "reference", L_CIFAR100, 80, 0.5 / L_CIFAR100)
    assert plan.mode == "online" and plan.interval == 0 and plan.student_steps == 31280
    assert any("online KD" in note for note in plan.notes)


def test_rate_50_is_offline_and_doubles_epochs():
    plan = plan_online_kd("spaced_online_kd", "reference", L_CIFAR100, 80, 50)
    assert plan.mode == "offline" and plan.total_epochs == 160


def test_standard_semantics_distils_the_trailing_batches():
    plan = plan_online_kd("spaced_online_kd", "standard", L_CIFAR100, 80, 1.5)
    assert (plan.replay_events, plan.never_distilled, plan.student_steps) == (54, 0, 31280)


def test_sampler_batches_cover_epoch_and_last_is_short():
    sampler = EpochSampler(50000, 128, seed=3)
    assert len(sampler) == L_CIFAR100
    batches = [sampler.batch(0, i) for i in range(len(sampler))]
    assert batches[-1].numel() == 80
    assert sorted(torch_cat(batches)) == list(range(50000))
    assert not all((sampler.batch(1, 0) == batches[0]).tolist())


def test_sharded_sampler_is_a_partition_with_equal_batch_counts():
    n, b, shards = 1000, 16, 3
    samplers = [EpochSampler(n, b, seed=1, shard_id=k, num_shards=shards) for k in range(shards)]
    counts = {len(s) for s in samplers}
    assert len(counts) == 1
    seen = torch_cat([s.batch(2, i) for s in samplers for i in range(len(s))])
    assert sorted(seen) == list(range(n))


def torch_cat(batches):
    return [int(v) for batch in batches for v in batch]
