"""Recipe registry and the host-side parameter draws (the replay-determinism core shared by every backend)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from fastkd.pipelines import available_recipes, get_recipe
from fastkd.pipelines.params import draw_params
from fastkd.pipelines.policies import CIFAR10_POLICY, IDENTITY, OP_ID


def test_get_recipe_knows_the_contract_names():
    for name in ("none", "online_kd", "tiny_online_kd", "self_kd", "vit"):
        assert get_recipe(name).name == name
    assert not get_recipe("none").is_random
    assert get_recipe("online_kd").rotate_degrees == 15.0
    assert get_recipe("self_kd").crop_fill == 128


def test_unknown_recipe_names_the_valid_ones():
    with pytest.raises(ValueError, match="online_kd") as info:
        get_recipe("randaug")
    assert "'randaug'" in str(info.value)
    assert set(available_recipes()) >= {"none", "online_kd", "self_kd", "vit"}


def test_params_are_a_pure_function_of_seed():
    recipe = get_recipe("self_kd")
    a, b = draw_params(recipe, 64, 32, 32, seed=5), draw_params(recipe, 64, 32, 32, seed=5)
    c = draw_params(recipe, 64, 32, 32, seed=6)
    for field in ("crop_offsets", "flips", "cutout_centres"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert torch.equal(a.autoaugment.values, b.autoaugment.values)
    assert not torch.equal(a.crop_offsets, c.crop_offsets)


def test_crop_offsets_are_uniform_integers_including_both_ends():
    """A float position scaled to 0..2*pad and rounded gives the two end offsets half the mass; integers do not."""
    offsets = draw_params(get_recipe("online_kd"), 20000, 32, 32, seed=0).crop_offsets
    assert offsets.min() == 0 and offsets.max() == 8
    counts = torch.bincount(offsets.flatten(), minlength=9).double()
    assert chisquare(counts.numpy()).pvalue > 1e-3
    end_share = (counts[0] + counts[8]) / counts.sum()
    assert abs(end_share - 2 / 9) < 0.01, f"end offsets have share {end_share:.4f}, expected 2/9"


def test_rotation_angles_cover_plus_minus_15_degrees():
    angles = draw_params(get_recipe("online_kd"), 5000, 32, 32, seed=1).angles
    assert angles.dtype == torch.float64
    assert -15 <= angles.min() < -14.9 and 14.9 < angles.max() <= 15


def test_autoaugment_params_follow_the_policy_table():
    params = draw_params(get_recipe("self_kd"), 25000, 32, 32, seed=2).autoaugment
    counts = torch.bincount(params.subpolicy, minlength=25).double()
    assert chisquare(counts.numpy()).pvalue > 1e-3
    for k, (p1, op1, _, p2, op2, _) in enumerate(CIFAR10_POLICY):
        rows = params.op_ids[params.subpolicy == k]
        for stage, (p, op) in enumerate(((p1, op1), (p2, op2))):
            applied = rows[:, stage] != IDENTITY
            assert set(rows[applied, stage].tolist()) <= {OP_ID[op]}
            five_sigma = 5 * (p * (1 - p) / len(rows)) ** 0.5
            assert abs(applied.double().mean().item() - p) <= five_sigma, (k, stage)


def test_autoaugment_values_carry_reference_magnitudes_and_random_signs():
    params = draw_params(get_recipe("self_kd"), 4000, 32, 32, seed=3).autoaugment
    # sub-policy 2: rotate m2 (always +20/3 degrees), then translateX m9 = +-150/331*32 pixels
    rows = (params.subpolicy == 1) & (params.op_ids[:, 0] == OP_ID["rotate"])
    assert torch.allclose(params.values[rows, 0], torch.tensor(20 / 3, dtype=torch.float64))
    rows = (params.subpolicy == 1) & (params.op_ids[:, 1] == OP_ID["translate_x"])
    assert set(params.values[rows, 1].abs().round(decimals=6).tolist()) == {round(150 / 331 * 32, 6)}
    assert (params.values[rows, 1] > 0).any() and (params.values[rows, 1] < 0).any()
    # sub-policy 6, second op: posterize m7 -> 5 bits; sub-policy 15: solarize m2 -> threshold 256 - 2 * 256 / 9
    rows = (params.subpolicy == 5) & (params.op_ids[:, 1] == OP_ID["posterize"])
    assert set(params.values[rows, 1].tolist()) == {5.0}
    rows = (params.subpolicy == 14) & (params.op_ids[:, 0] == OP_ID["solarize"])
    assert torch.allclose(params.values[rows, 0], torch.tensor(256 - 2 * 256 / 9, dtype=torch.float64))


def test_cutout_centres_cover_the_image():
    centres = draw_params(get_recipe("self_kd"), 5000, 32, 24, seed=4).cutout_centres
    assert centres[:, 0].min() == 0 and centres[:, 0].max() == 31
    assert centres[:, 1].min() == 0 and centres[:, 1].max() == 23
