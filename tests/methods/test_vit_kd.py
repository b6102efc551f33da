"""The ViT family (docs/semantics.md §5.4, R19-R26): the replay arithmetic of its plan, and a float64 oracle of the
pycls trainer written from the spec (plain torch, nothing from fastkd) that must agree with the engine on every
logged loss and on the final weights to 1e-9, in both semantics.
"""

import hashlib
import json
import math

import pytest
import torch
import torch.nn.functional as F

from fastkd.cli import main as fastkd_main
from fastkd.errors import ConfigError
from fastkd.methods import plan_vit
from method_oracles import batches, eager_copy, engine, engine_steps, write_data

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
N, B, L, SEED = 18, 4, 4, 7          # drop_last: L = 18 // 4 = 4
EPOCHS, LR, MIN_LR, WARMUP, WD = 4, 1e-3, 1e-5, 2, 0.05
W, T = 0.5, 2.0
EXACT = dict(rtol=1e-9, atol=1e-9)
TINY = {"deit_tiny": "{depth: 2, embed_dim: 32, num_heads: 2}", "convit_tiny": "{depth: 1}",
        "pit_ti": "{depth: [1, 1, 1]}"}


# ------------------------------------------------------------------------------------------------- plan
@pytest.mark.parametrize("iters, interval, period, steps", [
    (390, 0.5, 195, 195), (390, 1.0, 390, 391), (390, 1.5, 585, 585), (390, 2.0, 780, 781),   # CIFAR-100
    (781, 0.5, 391, 391), (781, 1.0, 781, 782), (781, 1.5, 1172, 1172), (781, 2.0, 1562, 1563),  # Tiny-ImageNet
])
def test_reference_replay_arithmetic(iters, interval, period, steps):
    plan = plan_vit("vit_spaced_kd", "reference", iters, 300, interval)
    assert (plan.teacher_steps_per_replay, plan.replay_steps_per_event) == (period, steps)
    assert plan.replay_events == iters * 300 // period
    assert plan.student_steps == plan.replay_events * steps
    standard = plan_vit("vit_spaced_kd", "standard", iters, 300, interval)
    assert standard.replay_steps_per_event == period and standard.student_steps == iters * 300


@pytest.mark.parametrize("dataset, interval, replay", [("cifar100", "1.0", "391 every 390"),
                                                       ("tiny_imagenet", "1.5", "1172 every 1172")])
def test_fastkd_plan_prints_the_reference_arithmetic(capsys, dataset, interval, replay):
    assert fastkd_main(["plan", "method=vit_spaced_kd", "model.student=deit_tiny", f"data.dataset={dataset}",
                        "data.drop_last=true", f"vit.interval={interval}", "train.epochs=300", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    steps, _, period = replay.split()
    assert (plan["replay_steps_per_event"], plan["teacher_steps_per_replay"]) == (int(steps), int(period))


def test_bad_vit_settings_are_refused_with_the_key():
    with pytest.raises(ConfigError, match="model.student: 'resnet18' is not a ViT"):
        plan_of(["method=vit_base"])
    with pytest.raises(ConfigError, match="vit.teacher_weights"):
        plan_of(["method=vit_offline_kd", "model.student=deit_tiny"])


def plan_of(overrides):
    from fastkd.runs import build_plan
    from fastkd.config import load_config

    return build_plan(load_config(None, ["data.dataset=cifar100", *overrides]))


# ----------------------------------------------------------------------------------------------- oracle
def blake_seed(*parts: int) -> int:
    """docs/semantics.md R21: blake2b-64 of the comma-joined decimal integers, little endian, shifted right by 1."""
    digest = hashlib.blake2b(",".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def permutation(seed: int) -> torch.Tensor:
    return torch.randperm(N, generator=torch.Generator().manual_seed(seed))


def epoch_lr(epoch: int) -> float:
    """timm CosineLRScheduler per epoch (spec 7): linear warm-up from 0.001*lr, then cosine over all epochs."""
    if epoch < WARMUP:
        start = 1e-3 * LR
        return start + epoch * (LR - start) / WARMUP
    return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * epoch / EPOCHS))


def adamw(*models):
    decay, no_decay = [], []
    for model in models:
        for name, p in model.named_parameters():
            if p.requires_grad:
                flat = p.ndim == 1 or name.endswith(".bias") or any(
                    t in name for t in ("cls_token", "pos_embed", "dist_token"))
                (no_decay if flat else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=LR, betas=(0.9, 0.999), eps=1e-8)


def kd_term(student_logits, teacher_logits):
    """pycls soft logit KD: KL(p_t || p_s) at T, summed, times T^2, divided by numel(student logits)."""
    return F.kl_div(F.log_softmax(student_logits / T, 1), F.log_softmax(teacher_logits / T, 1), reduction="sum",
                    log_target=True) * T * T / student_logits.numel()


def student_logits(student, x, reference, distilled):
    """(CE logits, KD logits): DeiT's class and distillation heads of one train-mode forward; other models: the
    reference runs the student a second time for the KD logits, standard reuses the first forward."""
    z = student(x)
    if distilled:
        return z, student.distill_logits
    return z, (student(x) if reference else z)


def step(optimizer, loss):
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def run_oracle(mode, semantics, teacher, student, data, distilled, interval):
    reference = semantics == "reference"
    x_all, y_all = data
    log = []

    def student_step(optimizer, x, y, teacher_logits):
        z, z_kd = student_logits(student, x, reference, distilled)
        ce, kd = F.cross_entropy(z, y), kd_term(z_kd, teacher_logits)
        loss = (1 - W) * ce + W * kd
        step(optimizer, loss)
        log.append(("student", [loss.item(), ce.item(), kd.item()]))

    def pycls_replay_step(optimizer, x, y, teacher_logits):
        """trainer.py's replay step, its statements in its order: `loss, ... = loss_cls, ...` binds `loss` to the
        CE tensor itself, so `loss += dummy_loss` (0 x every teacher parameter) adds in place to the CE, which then
        carries the term into `loss_cls * (1 - w) + loss_logit`: the teacher gets zero gradients (docs R26)."""
        preds, preds_kd = student_logits(student, x, reference, distilled)
        loss_cls = F.cross_entropy(preds, y)
        loss = loss_cls
        dummy_loss = 0.0
        for param in teacher.parameters():
            dummy_loss += param.sum() * 0.0
        loss += dummy_loss
        loss_logit = kd_term(preds_kd, teacher_logits)
        parts = [loss_cls.item(), loss_logit.item()]                 # what fastkd logs as ce and kd
        loss_cls = loss_cls * (1 - W)
        loss_logit = loss_logit * W
        loss = loss_cls + loss_logit
        step(optimizer, loss)
        log.append(("student", [loss.item(), *parts]))

    def teacher_targets(x, train_mode):
        teacher.train(train_mode)
        with torch.no_grad():
            out = teacher(x)
        teacher.train()
        return out

    if mode == "base":
        optimizers = [adamw(student)]
    elif reference and mode in ("online", "spaced"):
        optimizers = [adamw(teacher, student)]                     # one AdamW over both
    elif mode == "offline":
        optimizers = [adamw(student)]
    else:
        optimizers = [adamw(teacher), adamw(student)]
    shared, student_opt = optimizers[0], optimizers[-1]
    counter, passes, logged = 0, 0, []
    period = math.ceil(L * interval)
    for epoch in range(EPOCHS):
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = epoch_lr(epoch)
        order = permutation(blake_seed(SEED, epoch, 0xDA7A))
        for i in range(L):
            idx = order[i * B:(i + 1) * B]
            x, y = x_all[idx], y_all[idx]
            if mode == "base":
                loss = F.cross_entropy(student(x), y)
                step(shared, loss)
                log.append(("student", [loss.item()]))
            elif mode == "offline":
                student_step(student_opt, x, y, teacher_targets(x, reference))
            elif mode == "online" and reference:
                z, z_kd = student_logits(student, x, reference, distilled)
                zt = teacher(x)
                ce, ce_t, kd = F.cross_entropy(z, y), F.cross_entropy(zt, y), kd_term(z_kd, zt.detach())
                loss = (1 - W) * (ce + ce_t) + W * kd
                step(shared, loss)
                log.append(("student", [loss.item(), ce.item(), kd.item(), ce_t.item()]))
            elif mode == "online":
                zt = teacher(x)
                loss_t = F.cross_entropy(zt, y)
                step(optimizers[0], loss_t)
                log.append(("teacher", [loss_t.item()]))
                student_step(student_opt, x, y, zt.detach())
            elif reference:                                          # spaced, pycls
                counter += 1
                with torch.no_grad():
                    student(x)                                       # the "both" forward
                loss_t = F.cross_entropy(teacher(x), y) + 0 * sum(p.sum() for p in student.parameters())
                step(shared, loss_t)
                log.append(("teacher", [loss_t.item()]))
                if counter >= L * interval:
                    S, taken = counter, 0
                    for _ in range(S // L + 1):
                        fresh = permutation(blake_seed(SEED, passes, 0x5BACE))
                        passes += 1
                        for j in range(L):
                            jdx = fresh[j * B:(j + 1) * B]
                            pycls_replay_step(shared, x_all[jdx], y_all[jdx], teacher_targets(x_all[jdx], True))
                            taken += 1
                            if taken >= S:
                                counter = 0
                                break
            else:                                                    # spaced, standard
                counter += 1
                logged.append(idx)
                loss_t = F.cross_entropy(teacher(x), y)
                step(optimizers[0], loss_t)
                log.append(("teacher", [loss_t.item()]))
                if counter >= period or (epoch == EPOCHS - 1 and i == L - 1):
                    for jdx in logged:
                        student_step(student_opt, x_all[jdx], y_all[jdx], teacher_targets(x_all[jdx], False))
                    counter, logged = 0, []
    return log


def engine_run(tmp_path, root, method, semantics, model, interval, extra=()):
    return engine(tmp_path, root, method, semantics, EPOCHS, [
        "data.shuffle=true", "data.drop_last=true", "data.image_size=32", f"model.student={model}",
        f"vit.model_args={TINY[model]}", "vit.drop_path_rate=0", f"vit.interval={interval}", f"vit.logit_weight={W}",
        f"vit.temperature={T}", "optim.name=adamw", f"optim.lr={LR}", f"optim.weight_decay={WD}",
        "optim.schedule=warmup_cosine", f"optim.warmup_epochs={WARMUP}", f"optim.min_lr={MIN_LR}", *extra])


def train_tensors(root):
    (x, y), = batches(root, "train", N, IMAGENET)
    return x, y


FIELDS = {"student": ("loss", "ce", "kd"), "teacher": ("loss",)}


@pytest.mark.parametrize("method, semantics, model, interval, events", [
    ("vit_spaced_kd", "reference", "deit_tiny", 1.0, 4),     # L divides S: S+1 replay steps per event
    ("vit_spaced_kd", "reference", "deit_tiny", 0.75, 5),    # S = 3, not a multiple of L
    ("vit_spaced_kd", "reference", "pit_ti", 1.0, 4),      # a non-DeiT student: second forward for the KD logits
    ("vit_spaced_kd", "reference", "pit_ti", 1.25, 3),     # S = 5 spans an epoch boundary
    ("vit_spaced_kd", "reference", "convit_tiny", 0.5, 8),
    ("vit_spaced_kd", "standard", "deit_tiny", 1.5, 3),      # 2 events + the trailing batches at the end
    ("vit_spaced_kd", "standard", "convit_tiny", 0.75, 6),
])
def test_spaced_engine_matches_oracle(tmp_path, method, semantics, model, interval, events):
    root = write_data(tmp_path)
    trainer = engine_run(tmp_path, root, method, semantics, model, interval)
    teacher = eager_copy(trainer.learners["teacher"].model)
    student = eager_copy(trainer.learners["student"].model)
    trainer.fit()
    log = run_oracle("spaced", semantics, teacher, student, train_tensors(root), model == "deit_tiny", interval)
    got = engine_steps(trainer.run_dir, FIELDS)
    assert [kind for kind, _ in got] == [kind for kind, _ in log]
    assert trainer.method.replay_events == events >= 3
    torch.testing.assert_close(torch.tensor([v for _, vs in got for v in vs], dtype=torch.float64),
                               torch.tensor([v for _, vs in log for v in vs], dtype=torch.float64), **EXACT)
    for name, oracle in (("teacher", teacher), ("student", student)):
        engine_state = trainer.learners[name].model.state_dict()
        for key, value in oracle.state_dict().items():
            torch.testing.assert_close(engine_state[key], value, **EXACT, msg=lambda m: f"{name} {key}: {m}")


@pytest.mark.parametrize("method, semantics, model", [
    ("vit_online_kd", "reference", "convit_tiny"),
    ("vit_online_kd", "standard", "deit_tiny"),
    ("vit_offline_kd", "reference", "deit_tiny"),
    ("vit_offline_kd", "standard", "deit_tiny"),
    ("vit_base", "reference", "deit_tiny"),
])
def test_other_modes_match_oracle(tmp_path, method, semantics, model):
    root = write_data(tmp_path)
    extra = []
    if method == "vit_offline_kd":
        from fastkd.models import create_model

        torch.manual_seed(3)
        trained = create_model("deit_tiny", num_classes=100, img_size=32, drop_path_rate=0.0, depth=2, embed_dim=32,
                               num_heads=2)
        torch.save(trained.state_dict(), tmp_path / "teacher.pt")
        extra = [f"vit.teacher_weights={tmp_path / 'teacher.pt'}"]
    trainer = engine_run(tmp_path, root, method, semantics, model, 1.0, extra)
    learners = trainer.learners
    teacher = eager_copy(learners["teacher"].model) if "teacher" in learners else None
    student = eager_copy(learners["student"].model)
    if method == "vit_offline_kd":
        for key, value in trained.state_dict().items():
            assert torch.equal(teacher.state_dict()[key], value.double()), key
    trainer.fit()
    mode = method.removeprefix("vit_").removesuffix("_kd")
    log = run_oracle(mode, semantics, teacher, student, train_tensors(root),
                     model == "deit_tiny" and mode != "base", 1.0)
    fields = {"student": ("loss",) if mode == "base" else ("loss", "ce", "kd"), "teacher": ("loss",)}
    if (mode, semantics) == ("online", "reference"):   # one step: (1-w)(CE_s + CE_t) + w*KD
        fields["student"] = ("loss", "ce", "kd", "teacher_ce")
    got = engine_steps(trainer.run_dir, fields)
    assert [kind for kind, _ in got] == [kind for kind, _ in log] and len(log) >= EPOCHS * L
    torch.testing.assert_close(torch.tensor([v for _, vs in got for v in vs], dtype=torch.float64),
                               torch.tensor([v for _, vs in log for v in vs], dtype=torch.float64), **EXACT)
    for name, oracle in (("teacher", teacher), ("student", student)):
        if oracle is not None:
            engine_state = learners[name].model.state_dict()
            for key, value in oracle.state_dict().items():
                torch.testing.assert_close(engine_state[key], value, **EXACT, msg=lambda m: f"{name} {key}: {m}")


# ------------------------------------------------------------------------------------- engine pieces
def test_warmup_cosine_follows_the_reference_formula_per_epoch():
    from fastkd.config import OptimConfig
    from fastkd.engine.steps import build_optimizer, build_scheduler

    cfg = OptimConfig(name="adamw", lr=5e-4, weight_decay=0.05, schedule="warmup_cosine")
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg)
    scheduler = build_scheduler(optimizer, cfg, 300)
    seen = []
    for _ in range(300):
        seen.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    expected = [5e-7 + e * (5e-4 - 5e-7) / 20 if e < 20
                else 5e-6 + 0.5 * (5e-4 - 5e-6) * (1 + math.cos(math.pi * e / 300)) for e in range(300)]
    torch.testing.assert_close(torch.tensor(seen, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-12, atol=0)
    assert optimizer.param_groups[0]["eps"] == 1e-8 and seen[0] == 5e-7


@pytest.mark.parametrize("semantics, model, moves", [("reference", "deit_tiny", True), ("reference", "pit_ti", True),
                                                     ("standard", "deit_tiny", False)])
def test_teacher_moves_during_replays_only_under_reference(tmp_path, semantics, model, moves):
    """R26: the reference's replay steps hand the teacher zero gradients, so the shared AdamW moves it while only the
    student trains; under `standard` a replay leaves the teacher exactly as it was."""
    trainer = engine_run(tmp_path, write_data(tmp_path), "vit_spaced_kd", semantics, model, 0.75)
    method, teacher = trainer.method, trainer.learners["teacher"].model
    replay = method._replay_fresh if semantics == "reference" else method._replay_logged
    moved: list[bool] = []

    def watched(ctx):
        before = [p.detach().clone() for p in teacher.parameters()]
        replay(ctx)
        moved.append(any(not torch.equal(b, p) for b, p in zip(before, teacher.parameters())))

    method._replay_fresh = method._replay_logged = watched
    trainer.fit()
    assert len(moved) >= 3 and all(m == moves for m in moved), moved


def test_parameter_groups_keep_tokens_norms_and_biases_out_of_weight_decay():
    from fastkd.engine.steps import decay_param_groups
    from fastkd.methods.vit_models import NO_DECAY_NAMES
    from fastkd.models import create_model

    deit = create_model("deit_tiny", distilled=True)
    decay, no_decay = decay_param_groups([deit], 0.05, NO_DECAY_NAMES)
    names = {id(p): n for n, p in deit.named_parameters()}
    flat = {names[id(p)] for p in no_decay["params"]}
    assert {"cls_token", "pos_embed", "dist_token", "norm.weight", "head.bias", "blocks.0.attn.qkv.bias"} <= flat
    assert {names[id(p)] for p in decay["params"]} == {n for n, p in deit.named_parameters() if n not in flat}
    assert all(p.ndim > 1 for p in decay["params"]) and (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0)
    t2t = create_model("t2t_vit_7")
    kept = sum(p.numel() for group in decay_param_groups([t2t], 0.05, NO_DECAY_NAMES) for p in group["params"])
    assert kept == 4_024_394   # the frozen sinusoidal position embedding is left out


@pytest.mark.parametrize("semantics, train_mode", [("reference", True), ("standard", False)])
def test_replay_teacher_mode(tmp_path, semantics, train_mode):
    """R24: replay targets come from a train-mode teacher (drop path active) under reference, eval mode under
    standard; the teacher's own steps are always in train mode with gradients."""
    root = write_data(tmp_path)
    trainer = engine_run(tmp_path, root, "vit_spaced_kd", semantics, "deit_tiny", 1.0,
                         ["train.epochs=1", "vit.drop_path_rate=0.2"])
    calls = []
    trainer.learners["teacher"].model.register_forward_pre_hook(
        lambda module, _: calls.append((module.training, torch.is_grad_enabled())))
    trainer.fit()
    training_calls, eval_calls = calls[:-3], calls[-3:]    # the test split is evaluated in 3 batches at the end
    assert eval_calls == [(False, False)] * 3
    replay_calls = [training for training, grad in training_calls if not grad]
    assert [training for training, grad in training_calls if grad] == [True] * L
    assert replay_calls == [train_mode] * (L + (semantics == "reference"))


def test_interrupted_spaced_run_resumes_bitwise(tmp_path):
    """The space counter, the replay stream's pass count, the shared AdamW and its schedule ride in the checkpoint."""
    root = write_data(tmp_path)
    extra = ["vit.drop_path_rate=0.1", "train.deterministic=true"]
    full = engine_run(tmp_path / "full", root, "vit_spaced_kd", "reference", "deit_tiny", 0.75, extra)
    full.fit()
    part = engine_run(tmp_path / "part", root, "vit_spaced_kd", "reference", "deit_tiny", 0.75,
                      [*extra, "train.max_steps=7"])
    part.fit()
    assert part.method.space_counter == 1
    cfg = part.cfg.model_copy(update={"train": part.cfg.train.model_copy(update={"max_steps": None})})
    resumed = type(part)(cfg, part.run_dir, resume=True, quiet=True)
    resumed.fit()
    for name in ("teacher", "student"):
        expected, got = full.learners[name].model.state_dict(), resumed.learners[name].model.state_dict()
        for key, value in expected.items():
            assert torch.equal(got[key], value), f"{name} {key}"
    assert full.method.state_dict()["replay_passes"] == resumed.method.state_dict()["replay_passes"] > 0


def test_fastkd_train_runs_a_tiny_vit_on_digits(tmp_path):
    config = tmp_path / "vit.yaml"
    config.write_text("method: vit_spaced_kd\nsemantics: reference\n")
    code = fastkd_main(["train", str(config), "method=vit_spaced_kd", "model.student=deit_tiny", "data.dataset=digits",
                        "data.image_size=32", "data.batch_size=64", "data.drop_last=true",
                        "vit.model_args={depth: 1, embed_dim: 32, num_heads: 2}", "vit.interval=0.5",
                        "optim.name=adamw", "optim.lr=5e-4", "optim.weight_decay=0.05",
                        "optim.schedule=warmup_cosine", "optim.warmup_epochs=1", "train.epochs=2",
                        "train.device=cpu", "train.progress=false", "train.tensorboard=false",
                        f"output_dir={tmp_path}", "name=vit"])
    assert code == 0
    summary = json.loads((tmp_path / "vit" / "summary.json").read_text())
    assert summary["finished"] and summary["replay_events"] == 4 and summary["student_final_top1"] is not None


def test_skip_undoes_a_shared_optimizer_step_for_teacher_and_student(tmp_path, monkeypatch):
    """reference semantics: one AdamW over both models, so a teacher step also moves the student (weight decay,
    moments). A non-finite teacher step under `train.nonfinite: skip` leaves both models and the optimizer as they
    were: the run after the skipped step 2 equals the run stopped after step 1."""
    from fastkd.engine.trainer import Trainer

    nan_step = 2  # a teacher step; the first replay comes at step L = 4
    original = Trainer.batch

    def batch(self, indices, seed):
        batch = original(self, indices, seed)
        return batch._replace(x=batch.x * float("nan")) if self.global_step + 1 == nan_step else batch

    monkeypatch.setattr(Trainer, "batch", batch)
    root = write_data(tmp_path)
    states = []
    for steps in (nan_step - 1, nan_step):
        trainer = engine_run(tmp_path / f"steps{steps}", root, "vit_spaced_kd", "reference", "deit_tiny", 1.0,
                             ["train.nonfinite=skip", f"train.max_steps={steps}"])
        trainer.fit()
        optimizer = trainer.learners["teacher"].optimizer
        assert optimizer is trainer.learners["student"].optimizer  # shared
        states.append(({f"{name}.{k}": v.clone() for name in ("teacher", "student")
                        for k, v in trainer.learners[name].model.state_dict().items()},
                       [v.clone() for state in optimizer.state.values() for v in state.values()
                        if isinstance(v, torch.Tensor)]))
    (models_before, moments_before), (models_after, moments_after) = states
    assert models_before.keys() == models_after.keys()
    assert all(torch.equal(models_before[k], models_after[k]) for k in models_before)
    assert len(moments_before) == len(moments_after) > 0
    assert all(torch.equal(a, b) for a, b in zip(moments_before, moments_after))
