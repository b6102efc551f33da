"""In-process checks of the pieces the torchrun tests rely on: a rank's rows of a global batch are bit-identical to
the rows of the single-process batch for every augmentation recipe (parameters and erasing noise drawn for the
whole batch), and what several processes cannot run yet is refused in one line."""

import pytest
import torch

from fastkd.config import load_config
from fastkd.engine import distributed
from fastkd.engine.trainer import _check_distributed
from fastkd.errors import ConfigError
from fastkd.pipelines import build_pipeline, get_recipe


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
    with pytest.raises(ConfigError, match=r"^train.nonfinite=skip under torchrun .* not supported yet"):
        _check_distributed(load_config(None, [*base, "train.nonfinite=skip"]), 36, 12)
