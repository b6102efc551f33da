"""Sharding: the sampler's per-shard split, and the torchrun engine's rank rows of a global batch, which are
bit-identical to the single-process rows for every augmentation recipe."""

from __future__ import annotations

import pytest
import torch

from fastkd.data.sampler import EpochSampler
from fastkd.config import load_config
from fastkd.engine import distributed
from fastkd.engine.trainer import _check_distributed
from fastkd.errors import ConfigError
from fastkd.pipelines import build_pipeline, get_recipe


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


# Data-parallel rows of a global batch (the torchrun tests rely on these).
@pytest.mark.parametrize("recipe", ["online_kd", "self_kd", "vit"])
@pytest.mark.parametrize("world", [2, 3])
def test_rank_rows_equal_the_single_process_rows(monkeypatch, recipe, world):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 32, 32, 3), dtype=torch.uint8, generator=generator)
    labels = torch.arange(12) % 5
    pipe = build_pipeline(images, labels, get_recipe(recipe), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
                          backend="torch", dtype=torch.float64, channels_last=False)
    indices = torch.tensor([7, 1, 11, 3, 0, 9, 4])
    seed = 1234
    full_x, full_y = pipe(indices, seed)
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    blocks = [distributed.shard_rows(len(indices), rank) for rank in range(world)]
    assert [b.stop - b.start for b in blocks] == [len(part) for part in torch.tensor_split(indices, world)]
    for rows in blocks:
        x, y = pipe(indices, seed, rows)
        assert torch.equal(x, full_x[rows]) and torch.equal(y, full_y[rows])


def test_what_several_processes_cannot_run_is_refused(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    base = ["data.batch_size=8", "data.eval_batch_size=4"]
    _check_distributed(load_config(None, base), 36, 12)  # last training batch 4: one row per process
    _check_distributed(load_config(None, [*base, "data.drop_last=true"]), 34, 12)
    with pytest.raises(ConfigError, match=r"^data.batch_size=8 gives a batch of 2 samples for 4 processes"):
        _check_distributed(load_config(None, base), 34, 12)
    with pytest.raises(ConfigError, match=r"^data.eval_batch_size=4 gives a batch of 3 samples for 4 processes"):
        _check_distributed(load_config(None, base), 36, 11)
    _check_distributed(load_config(None, [*base, "train.nonfinite=skip"]), 36, 12)  # decided alike on all ranks
