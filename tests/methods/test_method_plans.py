"""Every method's plan against docs/semantics.md's worked numbers: online-KD interval arithmetic (§5.1, R4), self KD,
EMA and dropout schedules (§5.3, §6, §7, R6, R13, R16), the batches per epoch L they count in, and `fastkd plan`
for every method."""

import json

import pytest

from fastkd.cli import main as cli_main
from fastkd.config import ConfigError, load_config
from fastkd.data import EpochSampler
from fastkd.methods import build_method, plan_dropout, plan_ema, plan_online_kd, plan_self_kd

L_CIFAR100, L_TINY = 391, 782   # ceil(50000 / 128), ceil(100000 / 128)


# --------------------------------------------------------------------------------------------- online KD
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
    plan = plan_online_kd("spaced_online_kd", "reference", L_TINY, 80, 1.5)
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
    """L, the unit of every interval above: ceil(N / B) batches, the last one short."""
    sampler = EpochSampler(50000, 128, seed=3)
    assert len(sampler) == L_CIFAR100
    batches = [sampler.batch(0, i) for i in range(len(sampler))]
    assert batches[-1].numel() == 80
    assert sorted(int(v) for batch in batches for v in batch) == list(range(50000))
    assert not all((sampler.batch(1, 0) == batches[0]).tolist())


# ------------------------------------------------------------------------------------------------ self KD
def test_self_kd_rate_4_fires_at_g_equal_L_mod_I():
    plan = plan_self_kd("spaced_self_kd", "reference", L_CIFAR100, 80, 4.0)
    assert plan.interval == 1564
    assert plan.first_events[:3] == [391, 1955, 3519]
    assert (plan.kd_events, plan.never_distilled) == (20, 1173)   # last event at g = 30107
    assert plan.full_steps == 30107 and plan.deepest_steps == 31280 - 20
    assert plan_self_kd("spaced_self_kd", "reference", L_CIFAR100, 12, 4.0).kd_events == 3


def test_self_kd_rate_half_fires_from_the_first_iteration():
    plan = plan_self_kd("spaced_self_kd", "reference", L_CIFAR100, 80, 0.5)
    assert plan.interval == 195 and plan.first_events[:3] == [1, 196, 391]


def test_self_kd_standard_uses_the_plain_index_and_distils_the_tail():
    plan = plan_self_kd("spaced_self_kd", "standard", L_CIFAR100, 80, 4.0)
    assert plan.first_events[:2] == [1564, 3128]
    assert (plan.kd_events, plan.full_steps, plan.never_distilled) == (20, 31280, 0)
    plan = plan_self_kd("spaced_self_kd", "standard", L_CIFAR100, 80, 1.5)   # I = 586, 222 trailing batches
    assert (plan.kd_events, plan.full_steps, plan.never_distilled) == (53 + 1, 31280, 0)


@pytest.mark.parametrize("semantics", ["reference", "standard"])
@pytest.mark.parametrize("rate", [0.3, 0.6, 1.0, 1.4, 2.5])
def test_self_kd_closed_form_matches_counting(semantics, rate):
    plan = plan_self_kd("spaced_self_kd", semantics, 7, 5, rate)
    events = [g for g in range(1, 36) if plan.is_event(g)]
    assert plan.first_events == events[:5]
    trailing = 35 - events[-1]
    assert plan.kd_events == len(events) + (semantics == "standard" and trailing > 0)
    assert plan.deepest_steps == 35 - len(events)
    assert plan.never_distilled == (trailing if semantics == "reference" else 0)


def test_self_kd_every_iteration():
    plan = plan_self_kd("self_kd", "reference", L_CIFAR100, 80, 4.0)
    assert (plan.interval, plan.kd_events, plan.deepest_steps) == (0, 31280, 0)
    tiny = plan_self_kd("spaced_self_kd", "reference", L_CIFAR100, 80, 0.5 / L_CIFAR100)
    assert tiny.interval == 0 and any("every iteration" in note for note in tiny.notes)


# ---------------------------------------------------------------------------------------------------- EMA
def test_ema_spacing_0_1_updates_every_39_iterations():
    plan = plan_ema("spaced_ema", "reference", L_CIFAR100, 80, 0.1, 0.99)
    assert (plan.mode, plan.interval, plan.updates) == ("fixed", 39, 31280 // 39)
    assert plan.schedule(0).interval == 39


def test_ema_below_one_iteration_never_updates_under_reference_only():
    reference = plan_ema("spaced_ema", "reference", L_CIFAR100, 80, 0.5 / L_CIFAR100, 0.99)
    assert (reference.mode, reference.interval, reference.updates) == ("never", 0, 0)
    assert reference.schedule(0).step() is False
    standard = plan_ema("spaced_ema", "standard", L_CIFAR100, 80, 0.5 / L_CIFAR100, 0.99)
    assert (standard.mode, standard.interval, standard.updates) == ("every_step", 1, 31280)


def test_ema_every_step_and_random():
    assert plan_ema("ema", "reference", L_CIFAR100, 80, 4.0, 0.999).mode == "every_step"
    plan = plan_ema("spaced_ema", "reference", L_CIFAR100, 80, 501.0, 0.999)
    assert (plan.mode, plan.max_random_interval) == ("random", 157)
    assert 31280 / 80 < plan.updates < 31280 / 77   # mean interval about 78.7
    schedule, intervals = plan.schedule(3), set()
    for _ in range(5000):
        if schedule.step():
            intervals.add(schedule.interval)
    assert min(intervals) >= 1 and max(intervals) <= 157 and len(intervals) > 20


# ------------------------------------------------------------------------------------------------ dropout
def test_dropout_space_1_is_the_sine_with_period_L():
    plan = plan_dropout("spaced_dropout", "reference", L_CIFAR100, 80, "max", 0.5, 1.0, False, 16)
    assert (plan.reference_name, plan.variant, plan.period) == ("MaxSpacedDropout", "sine", 391)
    assert plan.rate_at(0) == 0.0
    assert plan.rate_at(391) < 1e-15
    assert plan.rate_at(195) == pytest.approx(0.5, rel=1e-4)


@pytest.mark.parametrize("L, space, variant", [
    (L_CIFAR100, 1.27, "sine"), (L_CIFAR100, 1.28, "random"), (L_CIFAR100, 10.0, "random"),
    (L_TINY, 0.63, "sine"), (L_TINY, 0.64, "random"),
])
def test_dropout_random_variant_from_500_iterations(L, space, variant):
    assert plan_dropout("spaced_dropout", "reference", L, 80, "standard", 0.3, space, False, 16).variant == variant


def test_dropout_constant_and_cutout_schedules():
    plan = plan_dropout("dropout", "reference", L_CIFAR100, 80, "standard", 0.3, 1.0, True, 16)
    assert (plan.reference_name, plan.variant, plan.cutout, plan.cutout_period) == \
        ("StandardDropout", "constant", "sine", 391.0)
    assert [plan.cutout_box_at(c) for c in (0, 195, 391)] == [0, 15, 0]
    assert plan_dropout("dropout", "reference", L_CIFAR100, 80, "max", 0.3, 0.0, True, 16).cutout_box_at(7) == 16
    # The reference's cutout goes random at space > 500 epochs, its dropout at S >= 500 iterations (docs/semantics.md
    # R16).
    assert plan_dropout("spaced_dropout", "reference", L_CIFAR100, 80, "max", 0.3, 10.0, True, 16).cutout == "sine"
    assert plan_dropout("spaced_dropout", "standard", L_CIFAR100, 80, "max", 0.3, 10.0, True, 16).cutout == "random"


def test_dropout_semantics_counter_and_evaluation():
    reference = plan_dropout("spaced_dropout", "reference", L_CIFAR100, 80, "max", 0.3, 1.0, False, 16)
    standard = plan_dropout("spaced_dropout", "standard", L_CIFAR100, 80, "max", 0.3, 1.0, False, 16)
    assert reference.active_at_eval and "evaluation" in reference.counter
    assert not standard.active_at_eval and standard.counter == "training steps"


def test_spaced_dropout_without_a_period_is_a_config_error():
    with pytest.raises(ConfigError, match="dropout.space"):
        load_config(None, ["method=spaced_dropout", "dropout.space=0"])
    with pytest.raises(ConfigError, match="int\\(space \\* L\\) = 0"):
        plan_dropout("spaced_dropout", "reference", L_CIFAR100, 80, "max", 0.3, 0.001, False, 16)


# --------------------------------------------------------------------------------------------- fastkd plan
@pytest.mark.parametrize("overrides, expected", [
    (["method=spaced_self_kd", "kd.interval=4.0"], {"interval": 1564, "kd_events": 20, "never_distilled": 1173}),
    (["method=spaced_ema", "ema.interval=0.1"], {"mode": "fixed", "interval": 39, "updates": 802}),
    (["method=spaced_dropout", "dropout.space=1.0"], {"variant": "sine", "period": 391}),
    (["method=dropout", "dropout.op=standard"], {"reference_name": "StandardDropout", "variant": "constant"}),
])
def test_fastkd_plan_json_covers_every_method(tmp_path, capsys, overrides, expected):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  dataset: cifar100\n")
    assert cli_main(["plan", str(cfg), *overrides, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["iters_per_epoch"] == L_CIFAR100
    assert {k: plan[k] for k in expected} == expected


def test_fastkd_plan_table_prints_every_field_and_note(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: spaced_self_kd\ndata:\n  dataset: cifar100\nkd:\n  interval: 4.0\n")
    assert cli_main(["plan", str(cfg)]) == 0
    out = capsys.readouterr().out
    for label in ("index offset", "first events", "391, 1955, 3519", "never distilled", "docs/semantics.md R6"):
        assert label in out


def test_build_method_rejects_models_without_the_method_variant():
    cfg = load_config(None, ["method=spaced_dropout", "model.student=resnet34"])
    method = build_method(cfg, 10)
    with pytest.raises(ConfigError, match="no dropout variant; choose one of: resnet101, resnet18, resnet50"):
        method.build_models(cfg, 10)
