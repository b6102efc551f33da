"""Data-parallel sharding of the in-memory path: the engine's sampler splits each global batch k::num_shards."""

from __future__ import annotations

import pytest
import torch

from fastkd.data.sampler import EpochSampler


@pytest.mark.parametrize("num_samples,batch_size,num_shards", ((1000, 32, 2), (1003, 16, 4), (50, 8, 3)))
def test_shards_cover_each_epoch_once_with_equal_batch_counts(num_samples, batch_size, num_shards):
    samplers = [EpochSampler(num_samples, batch_size, seed=5, shard_id=k, num_shards=num_shards)
                for k in range(num_shards)]
    assert len({len(s) for s in samplers}) == 1, "every shard runs the same number of batches"
    for epoch in (0, 1):
        shards = [torch.cat([s.batch(epoch, i) for i in range(len(s))]) for s in samplers]
        everything = torch.cat(shards)
        assert len(everything) == num_samples and len(torch.unique(everything)) == num_samples
        # each rank draws its own augmentations (per-shard seeds); a seed is stable, so replays regenerate pixels
        assert len({s.batch_seed(epoch, 3) for s in samplers}) == num_shards
        assert samplers[0].batch_seed(epoch, 3) == EpochSampler(num_samples, batch_size, seed=5, shard_id=0,
                                                                num_shards=num_shards).batch_seed(epoch, 3)
    assert not torch.equal(samplers[0].batch(0, 0), samplers[0].batch(1, 0)), "epochs are reshuffled"


def test_sharded_sampler_is_a_partition_with_equal_batch_counts():
    n, b, shards = 1000, 16, 3
    samplers = [EpochSampler(n, b, seed=1, shard_id=k, num_shards=shards) for k in range(shards)]
    counts = {len(s) for s in samplers}
    assert len(counts) == 1
    seen = [int(v) for s in samplers for i in range(len(s)) for v in s.batch(2, i)]
    assert sorted(seen) == list(range(n))
