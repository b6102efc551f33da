"""The ViT family (docs/semantics.md §5.4, R19-R26): the reference's pycls trainer for vision transformers, with
no KD, online, offline and spaced logit KD of a teacher of the student's own architecture.

Its plan (the replay arithmetic `fastkd plan` prints), its models, the AdamW parameter groups and (under
`reference`) the one AdamW shared by teacher and student, the losses, the schedule and its state all live here.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import record_function

from ..config import ExperimentConfig, ViTConfig
from ..config.methods import register_method
from ..data.sampler import derive_seed
from ..engine.method import Iteration, Method, OptimizerGroup
from ..engine.replay import ReplayLog
from ..engine.steps import Batch, StepContext, decay_param_groups
from ..errors import ConfigError, first_line
from ..kernels import cross_entropy, kd_loss
from ..kernels.global_batch import set_shard
from ..models import create_model
from ..models.vit import VIT_MODELS, DistilledDeiT
from ..plans.vit_kd import ViTPlan, plan_vit
from ..reference.keys import init_weights

NO_DECAY_NAMES = ("cls_token", "pos_embed", "dist_token")
"""Parameters the reference keeps out of weight decay by name (besides 1-D parameters and biases)."""
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
REPLAY_STREAM = 0x5BACE
"""Separates the seeds of the reference's independent replay loader from the sampler's (docs/semantics.md R21)."""


StudentForward = Callable[[torch.Tensor], Any]


@register_method("vit_spaced_kd")
@register_method("vit_offline_kd")
@register_method("vit_online_kd")
@register_method("vit_base")
class ViTFamily(Method):
    """One class for the four modes of the pycls trainer (docs/semantics.md §5.4).

    Student KD loss (1-w)*CE + w*KL(p_t||p_s)*T^2/(B*C); a distilled DeiT student takes CE on its class head and KD
    on its distillation head. `reference` keeps the pycls behaviour: one AdamW over both models, the teacher step
    carries a zero-weighted student term (so AdamW moves the student on teacher steps), replays draw fresh batches
    from an independent loader stream with S+1 steps when L divides S, non-DeiT students run a second forward for
    the KD logits, teacher targets are computed in train mode, and every replay step carries a zero-weighted teacher
    term (so AdamW moves the teacher during replays, R26). `standard`: one AdamW per model, the replay
    regenerates the exact batches the teacher saw, KD logits come from the first forward, the teacher is in eval
    mode for its targets.
    """

    def __init__(self, plan: ViTPlan, cfg: ExperimentConfig):
        self.plan = plan
        self.mode = plan.mode
        self.reference = plan.semantics == "reference"
        self.vit: ViTConfig = cfg.vit
        self.optim = cfg.optim
        self.batch_size = cfg.data.batch_size
        self.seed = cfg.seed
        self.shuffle = cfg.data.shuffle
        self.train_size = 0
        self.heads: StudentForward | None = None
        """A distilled DeiT student's (class, distillation) logits of one forward."""
        self.kd_forward: StudentForward | None = None
        """What the student's KD step runs: (CE logits, KD logits), or None = plain forward, one set of logits."""
        self.student_params: list[nn.Parameter] = []
        self.teacher_params: list[nn.Parameter] = []
        self.space_counter = 0
        self.replay_passes = 0
        self.replay = ReplayLog()
        self.replay_events = 0
        self.replay_steps = 0

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, iters_per_epoch: int) -> ViTFamily:
        if cfg.model.student not in VIT_MODELS:
            raise ConfigError(f"model.student: {cfg.model.student!r} is not a ViT; the {cfg.method} method trains "
                              f"one of: {', '.join(VIT_MODELS)}")
        if cfg.method == "vit_offline_kd" and not cfg.vit.teacher_weights:
            raise ConfigError("vit.teacher_weights: vit_offline_kd needs the trained teacher's checkpoint; set "
                              "vit.teacher_weights=PATH (e.g. the best.pt of a vit_base run)")
        return cls(plan_vit(cfg.method, cfg.semantics, iters_per_epoch, cfg.train.epochs, cfg.vit.interval), cfg)

    @property
    def shared_optimizer(self) -> bool:
        return self.reference and self.mode in ("online", "spaced")

    # ---------------------------------------------------------------------------------------- models
    def build_models(self, cfg: ExperimentConfig, num_classes: int) -> dict[str, nn.Module]:
        """Student and (except base) a teacher of the same architecture, as the reference's wrapper builds them.
        A DeiT KD student carries the distillation token and head; a DeiT teacher is the plain one-token DeiT the
        wrapper reduces it to (docs/semantics.md §3.4)."""
        name = cfg.model.student
        image_size = cfg.data.image_size or 224
        distilled = {"distilled": True} if name == "deit_tiny" and self.mode != "base" else {}
        student = _vit(name, num_classes, image_size, self.vit, **distilled)
        if self.mode == "base":
            return {"student": student}
        teacher = _vit(name, num_classes, self.vit.teacher_img_size or image_size, self.vit)
        if self.mode == "offline":
            init_weights(self.vit.teacher_weights, {"student": teacher})
            teacher.requires_grad_(False)
        return {"teacher": teacher, "student": student}

    def train_recipe(self, dataset: str) -> str:
        return "vit"

    def normalization(self, dataset: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """The pycls ViT data uses ImageNet statistics on every data set."""
        return IMAGENET_STATS

    def optimizer_groups(self, models: dict[str, nn.Module]) -> list[OptimizerGroup]:
        """The AdamW parameter groups (no decay for 1-D params, biases, tokens and position embeddings), shared
        by teacher and student under `reference` (online, spaced), one per trained model otherwise."""
        trained = [name for name, model in models.items() if any(p.requires_grad for p in model.parameters())]
        if self.shared_optimizer:
            trained.sort(key=lambda name: name != "teacher")  # the teacher steps every iteration: it leads the LR
            return [OptimizerGroup(tuple(trained), decay_param_groups([models[name] for name in trained],
                                                                      self.optim.weight_decay, NO_DECAY_NAMES))]
        # The LR follows the epoch even when a spacing longer than an epoch leaves one without a student step.
        return [OptimizerGroup((name,), decay_param_groups([models[name]], self.optim.weight_decay, NO_DECAY_NAMES),
                               schedule_every_epoch=name == "student" and self.mode == "spaced")
                for name in trained]

    def attach(self, ctx: StepContext) -> None:
        self.train_size = ctx.train_size
        student = ctx.learners["student"]
        model = student.model
        self.student_params = [p for p in model.parameters() if p.requires_grad]
        if "teacher" in ctx.learners:
            self.teacher_params = [p for p in ctx.learners["teacher"].model.parameters() if p.requires_grad]
        if isinstance(model, DistilledDeiT):
            self.heads = self.kd_forward = student.compiled(model.forward_heads)
        elif self.reference and self.mode != "base":
            self.kd_forward = lambda x: (model(x), model(x))  # the reference's second forward for KD logits

    def phase(self, epoch: int) -> str:
        return "student" if self.mode in ("base", "offline") else "both"

    def eval_outputs(self, ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
        """The student (a distilled DeiT: the mean of its two heads, as its eval mode) and a trained teacher."""
        outputs = {}
        for name, learner in ctx.learners.items():
            if name == "teacher" and self.mode == "offline":
                continue
            if name == "student" and self.heads is not None:
                cls_logits, distill_logits = learner.forward(batch, self.heads)
                outputs[name] = (cls_logits + distill_logits) / 2
            else:
                outputs[name] = learner.forward(batch)
        return outputs

    # -------------------------------------------------------------------------------------- schedule
    def run_iteration(self, it: Iteration, ctx: StepContext) -> None:
        batch = ctx.batch(it.indices, it.seed)
        if self.mode == "base":
            ctx.train_step("student", batch, cross_entropy)
        elif self.mode == "offline":
            teacher = ctx.learners["teacher"]
            targets = teacher.no_grad_forward(self._teacher_input(batch), train_mode=self.reference)
            self._student_step(ctx, batch, targets)
        elif self.mode == "online":
            self._online_step(ctx, batch)
        else:
            self._spaced_iteration(it, ctx, batch)

    def finish(self, ctx: StepContext) -> None:
        """End of training: `standard` distils the trailing partial interval the reference leaves out."""
        if self.mode == "spaced" and not self.reference and len(self.replay):
            self._replay_logged(ctx)

    def _online_step(self, ctx: StepContext, batch: Batch) -> None:
        if not self.reference:
            teacher_logits = ctx.train_step("teacher", batch, cross_entropy).outputs.detach()
            self._student_step(ctx, batch, teacher_logits)
            return
        # reference: student forward, teacher forward, (1-w)(CE_s + CE_t) + w*KD, one step of the shared AdamW
        # (taken through the teacher, which leads the shared schedule).
        student_forward = self.kd_forward or ctx.learners["student"].model
        teacher_model, vit = ctx.learners["teacher"].model, self.vit

        def loss_fn(outputs: tuple[Any, torch.Tensor], labels: torch.Tensor):
            student_out, teacher_logits = outputs
            student_loss, parts = self._student_loss(student_out, labels, teacher_logits.detach(), vit)
            teacher_ce = cross_entropy(teacher_logits, labels)
            return student_loss + (1 - vit.logit_weight) * teacher_ce, {**parts, "teacher_ce": teacher_ce.detach()}

        set_shard(ctx.learners["student"].model, batch.shard)  # it runs inside the teacher learner's forward
        ctx.train_step("teacher", batch, loss_fn, kind="student",
                       via=lambda inputs: (student_forward(inputs), teacher_model(inputs)))

    def _spaced_iteration(self, it: Iteration, ctx: StepContext, batch: Batch) -> None:
        self.space_counter += 1
        if self.reference:
            # The wrapper's "both" forward runs the student first (its output only feeds the zero-weighted term,
            # but drop path draws and BN statistics move); the student term keeps zero (not None) gradients, so
            # the shared AdamW decays and moves the student on every teacher step.
            ctx.learners["student"].no_grad_forward(batch, train_mode=True)
            params = self.student_params
            ctx.train_step("teacher", batch, lambda out, labels: cross_entropy(out, labels)
                           + 0.0 * torch.stack([p.sum() for p in params]).sum())
            if self.space_counter >= self.plan.teacher_steps_per_replay:
                self._replay_fresh(ctx)
            return
        with record_function("fastkd.replay"):
            self.replay.append(it.indices, it.seed)
        ctx.train_step("teacher", batch, cross_entropy)
        if self.space_counter >= self.plan.teacher_steps_per_replay:
            self._replay_logged(ctx)

    def _replay_fresh(self, ctx: StepContext) -> None:
        """reference: S//L + 1 passes over fresh permutations of the training set; the pass that reaches S steps
        stops there and every later pass still takes one step; train-mode teacher targets."""
        self.replay_events += 1
        teacher = ctx.learners["teacher"]
        period, L = self.space_counter, self.plan.iters_per_epoch
        taken = 0
        for _ in range(period // L + 1):
            order, pass_index = self._replay_order(self.replay_passes), self.replay_passes
            self.replay_passes += 1
            for j in range(L):
                indices = order[j * self.batch_size:(j + 1) * self.batch_size]
                batch = ctx.batch(indices, derive_seed(self.seed, pass_index, j, REPLAY_STREAM))
                self._student_step(ctx, batch, teacher.no_grad_forward(self._teacher_input(batch), train_mode=True),
                                   zero_term=self.teacher_params)
                taken += 1
                if taken >= period:
                    self.space_counter = 0
                    break
        self.replay_steps += taken

    def _replay_order(self, pass_index: int) -> torch.Tensor:
        """The sample order of replay pass `pass_index`: a permutation seeded by (run seed, pass, REPLAY_STREAM)
        (in file order with data.shuffle=false)."""
        if not self.shuffle:
            return torch.arange(self.train_size)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, pass_index, REPLAY_STREAM))
        return torch.randperm(self.train_size, generator=generator)

    def _replay_logged(self, ctx: StepContext) -> None:
        """standard: the exact logged batches, oldest first, against the eval-mode teacher."""
        self.replay_events += 1
        self.space_counter = 0
        teacher = ctx.learners["teacher"]
        with record_function("fastkd.replay"):
            entries = self.replay.drain()
        for indices, seed in entries:
            batch = ctx.batch(indices, seed)
            self._student_step(ctx, batch, teacher.no_grad_forward(self._teacher_input(batch), train_mode=False))
        self.replay_steps += len(entries)

    # ------------------------------------------------------------------------------------------ steps
    def _teacher_input(self, batch: Batch) -> Batch:
        """The batch bilinearly resized to vit.teacher_img_size (a no-op at the student's size)."""
        size = self.vit.teacher_img_size
        if size is None or tuple(batch.x.shape[-2:]) == (size, size):
            return batch
        return batch._replace(x=F.interpolate(batch.x, size=(size, size), mode="bilinear", align_corners=False))

    def _student_step(self, ctx: StepContext, batch: Batch, teacher_logits: torch.Tensor,
                      zero_term: list[nn.Parameter] = ()) -> None:
        """A student KD step. `zero_term`: parameters that get 0 x their sum added to the loss, hence zero (not
        absent) gradients, so a shared AdamW moves them too (docs/semantics.md R26: the reference's replay step
        adds it for the teacher)."""
        vit = self.vit

        def loss_fn(out: Any, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            loss, parts = self._student_loss(out, labels, teacher_logits, vit)
            if zero_term:
                loss = loss + 0.0 * torch.stack([p.sum() for p in zero_term]).sum()
            return loss, parts

        ctx.train_step("student", batch, loss_fn, via=self.kd_forward)

    @staticmethod
    def _student_loss(out: Any, labels: torch.Tensor, teacher_logits: torch.Tensor,
                      vit: ViTConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(1-w)*CE + w*KL(p_t||p_s)*T^2/(B*C) (the fused loss's `kl` + `mean` form); `out` is one set of logits
        or (CE logits, KD logits)."""
        w, temperature = vit.logit_weight, vit.temperature
        if not isinstance(out, tuple):
            result = kd_loss(out, teacher_logits, labels, temperature=temperature, alpha=w, soft="kl",
                             reduction="mean")
            return result.total, {"ce": result.ce, "kd": result.soft}
        ce_logits, kd_logits = out
        ce = cross_entropy(ce_logits, labels)
        kd = kd_loss(kd_logits, teacher_logits, labels, temperature=temperature, alpha=1.0, soft="kl",
                     reduction="mean").total
        return (1 - w) * ce + w * kd, {"ce": ce.detach(), "kd": kd.detach()}

    # ------------------------------------------------------------------------------------------ state
    def counters(self) -> dict[str, int]:
        if self.mode != "spaced":
            return {}
        return {"replay_events": self.replay_events, "replay_steps": self.replay_steps}

    def state_dict(self) -> dict[str, Any]:
        return {"space_counter": self.space_counter, "replay_passes": self.replay_passes,
                "replay": self.replay.state_dict(), "replay_events": self.replay_events,
                "replay_steps": self.replay_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.space_counter = state["space_counter"]
        self.replay_passes = state["replay_passes"]
        self.replay.load_state_dict(state["replay"])
        self.replay_events = state["replay_events"]
        self.replay_steps = state["replay_steps"]


def _vit(name: str, num_classes: int, image_size: int, vit: ViTConfig, **extra: Any) -> nn.Module:
    """A registered ViT at `image_size` with the configured drop path; vit.model_args may shrink or override."""
    kwargs = {"num_classes": num_classes, "img_size": image_size, "drop_path_rate": vit.drop_path_rate, **extra,
              **{key: tuple(value) if isinstance(value, list) else value for key, value in vit.model_args.items()}}
    try:
        model = create_model(name, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"vit.model_args: {name} does not take these arguments ({exc}); use its constructor's "
                          "arguments, e.g. depth") from None
    except (ValueError, AssertionError, RuntimeError, ZeroDivisionError) as exc:  # the constructor's own checks
        raise ConfigError(f"{name} cannot be built at image size {image_size} with vit.model_args="
                          f"{dict(vit.model_args)} ({type(exc).__name__}: {first_line(exc)}); change data.image_size "
                          "or vit.model_args (e.g. embed_dim divisible by num_heads, depth >= 1)") from None
    _check_patches(name, model, image_size)
    return model


def _check_patches(name: str, model: nn.Module, image_size: int) -> None:
    """Refuse an image size the patch embedding would crop (a 40-px image has 2x2 whole 16-px patches, its last 8
    rows and columns silently dropped) or cannot cover at all."""
    embed = getattr(model, "patch_embed", None)
    patch = getattr(embed, "patch_size", None)
    if patch is None:
        return
    side = patch[0] if isinstance(patch, (tuple, list)) else int(patch)
    overlapping = type(embed).__name__ != "PatchEmbed"  # PiT's convolutional embedding strides by half a patch
    if image_size < side or (not overlapping and image_size % side):
        raise ConfigError(f"data.image_size={image_size}: {name} cuts images into {side}-px patches, so it needs a "
                          f"multiple of {side} (e.g. {max(side, image_size - image_size % side)}); fastkd refuses "
                          "rather than crop")
