"""Spaced ViT KD as the reference's pycls fork runs it (`vit/pycls/core/trainer.py`, `models/distill.py`;
docs/semantics.md §5.4, §10).

timm `create_transform` per sample in DataLoader workers (RandomResizedCrop bicubic + flip + RandAugment + ImageNet
normalisation + per-pixel RandomErasing), drop_last, and a second independent loader whose iterators are re-created
for every replay pass. One AdamW over teacher and student with the reference's parameter groups, stepped per epoch
by timm's CosineLRScheduler. Teacher step: the wrapper's "both" forward (student with gradients, then teacher),
soft-target CE of the teacher plus a Python loop adding 0 * sum of every student parameter. Replay (once the
counter reaches L*s): S//L + 1 passes, student forward, soft-target CE, the batch resized to the teacher's size
(also when unchanged), no-grad train-mode teacher, unfused KD KL(p_t||p_s)*T^2/(B*C), the teacher dummy loop
added in place to the CE (docs/semantics.md R26); the one-hot helper's assert and six `.item()` reads once per
main-loader iteration.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageOps
from timm.data import auto_augment, create_transform
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader
from torchvision import transforms

from .common import EpochResult, StepLog, cudnn_benchmark
from .data import CifarPickleDataset

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NO_DECAY_NAMES = ("cls_token", "pos_embed", "distill_token", "dist_token")
"""The reference's no-decay names; fastkd's DeiT (timm's layout) calls the distillation token `dist_token`."""


def vit_train_transform(image_size: int, augment: bool = True) -> transforms.Compose:
    """timm `create_transform` as pycls builds it (docs/semantics.md §2.3); `augment=False`: the test transform
    Resize((size, size)) bilinear + ToTensor + Normalize."""
    if not augment:
        return transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor(),
                                   transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    transform = create_transform(input_size=image_size, is_training=True, auto_augment="rand-m9-mstd0.5-inc1",
                                 interpolation="bicubic", re_prob=0.25, re_mode="pixel", re_count=1,
                                 mean=IMAGENET_MEAN, std=IMAGENET_STD)
    for stage in transform.transforms:
        for op in getattr(stage, "ops", ()):
            if op.aug_fn is auto_augment.posterize:
                op.aug_fn = posterize_any_bits
    return transform


def posterize_any_bits(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, also for 0 bits: the increasing RandAugment asks for 0 bits at magnitude 10 (m9 with
    std 0.5 reaches it), which older Pillow releases turned into a black image and newer ones (13 here) refuse
    with a ValueError that kills the DataLoader worker."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def vit_train_loader(root: str | Path, image_size: int, batch_size: int, *, augment: bool = True,
                     shuffle: bool = True, num_workers: int = 4, persistent_workers: bool = False) -> DataLoader:
    """The pycls training loader: shuffled, drop_last, `num_workers` workers (re-spawned per iterator unless
    `persistent_workers`)."""
    dataset = CifarPickleDataset(root, train=True, transform=vit_train_transform(image_size, augment))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=True,
                      persistent_workers=persistent_workers and num_workers > 0)


def reference_adamw(named_models: dict[str, nn.Module], lr: float, weight_decay: float,
                    betas: tuple[float, float], eps: float) -> torch.optim.AdamW:
    """pycls `construct_optimizer` over the wrapper: no decay for 1-D params, biases and token/position names;
    frozen parameters left out; one AdamW for every model (torch's default implementation)."""
    decay, no_decay = [], []
    for prefix, model in named_models.items():
        for name, param in model.named_parameters(prefix=prefix):
            if not param.requires_grad:
                continue
            flat = param.ndim == 1 or name.endswith(".bias") or any(key in name for key in NO_DECAY_NAMES)
            (no_decay if flat else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas, eps=eps)


def soft_target_cross_entropy(logits: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """pycls SoftCrossEntropyLoss: sum over classes of -y * log_softmax(z), mean over the batch."""
    return torch.sum(-one_hot * F.log_softmax(logits, -1), -1).mean()


def logit_distill_loss(logits_t: torch.Tensor, logits_s: torch.Tensor, temperature: float) -> torch.Tensor:
    """The reference's "soft" logit KD: KL(p_t||p_s) summed, times T^2, divided by numel = B*C."""
    return F.kl_div(F.log_softmax(logits_s / temperature, dim=1), F.log_softmax(logits_t / temperature, dim=1),
                    reduction="sum", log_target=True) * (temperature * temperature) / logits_s.numel()


class SpacedViTKD:
    """The pycls spaced-KD loop over a (distilled DeiT) `student` and a `teacher` of the same architecture, one
    epoch per `train_epoch`.

    Args:
        loader, space_loader: the main and the independent replay loader (same dataset and transforms).
        interval_rate: SPACE_INTERVAL s; a replay starts once the counter reaches L*s.
        epochs, min_lr, warmup_epochs, warmup_factor: timm CosineLRScheduler(t_initial=epochs, ...), per epoch.
        log_steps: keep every step's losses in `step_log` (teacher: loss; student: loss, ce, kd).
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, loader: DataLoader, space_loader: DataLoader, *,
                 interval_rate: float, device: torch.device, num_classes: int, teacher_img_size: int,
                 lr: float, weight_decay: float, betas: tuple[float, float], eps: float, epochs: int,
                 min_lr: float, warmup_epochs: int, warmup_factor: float, logit_weight: float = 0.5,
                 temperature: float = 1.0, dtype: torch.dtype = torch.float32, log_steps: bool = False):
        self.teacher, self.student = teacher, student
        self.loader, self.space_loader = loader, space_loader
        self.device, self.dtype, self.num_classes = device, dtype, num_classes
        self.interval_rate, self.teacher_img_size = interval_rate, teacher_img_size
        self.logit_weight, self.temperature = logit_weight, temperature
        self.optimizer = reference_adamw({"student_model": student, "teacher_model": teacher}, lr, weight_decay,
                                         betas, eps)
        self.scheduler = CosineLRScheduler(self.optimizer, t_initial=epochs, lr_min=min_lr, warmup_t=warmup_epochs,
                                           warmup_lr_init=warmup_factor * lr)
        self.space_counter = 0
        self.epoch = 0
        self.last_logged: list[float] = []
        self.buffer_peak_bytes = 0
        """The reference buffers no batches: it replays from its second loader."""
        self.step_log = StepLog(log_steps)

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """pycls `smooth_one_hot_labels` with smoothing 0: an assert on the labels (a host sync), then one-hot."""
        assert labels.max() < self.num_classes
        return F.one_hot(labels, self.num_classes).to(self.dtype)

    def train_epoch(self) -> EpochResult:
        self.student.train()
        self.teacher.train()
        images = iterations = 0
        with cudnn_benchmark(False):
            for x, y in self.loader:
                x, y = x.to(self.device, self.dtype), y.to(self.device, non_blocking=True)
                labels_one_hot = self.one_hot(y)
                self.space_counter += 1
                preds, loss_cls, loss = self.teacher_step(x, labels_one_hot)
                if self.space_counter >= len(self.loader) * self.interval_rate:
                    preds, y, loss_cls, loss = self.replay()
                top1_err, top5_err = topk_errors(preds, y)
                # the six scalars the reference all-reduces and reads every main-loader iteration
                self.last_logged = [value.item() for value in (loss_cls, x.new_tensor(0.0), x.new_tensor(0.0), loss,
                                                               top1_err, top5_err)]
                images += len(y)
                iterations += 1
        self.epoch += 1
        self.scheduler.step(self.epoch)
        return EpochResult(images, iterations)

    def teacher_step(self, x: torch.Tensor, labels_one_hot: torch.Tensor):
        preds, preds_teacher = self.student(x), self.teacher(x)
        loss_cls = soft_target_cross_entropy(preds, labels_one_hot)
        loss = soft_target_cross_entropy(preds_teacher, labels_one_hot)
        dummy_loss = 0.0
        for param in self.student.parameters():
            dummy_loss += param.sum() * 0.0
        loss += dummy_loss
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.step_log.enabled:
            self.step_log.add("teacher", [loss.item()])
        return preds, loss_cls, loss

    def replay(self):
        period, taken = self.space_counter, 0
        for _ in range(period // len(self.space_loader) + 1):
            for x, y in self.space_loader:
                x, y = x.to(self.device, self.dtype), y.to(self.device, non_blocking=True)
                preds, loss_cls, loss = self.student_step(x, self.one_hot(y))
                taken += 1
                if taken >= period:
                    self.space_counter = 0
                    break
        return preds, y, loss_cls, loss

    def student_step(self, x: torch.Tensor, labels_one_hot: torch.Tensor):
        preds = self.student(x)
        loss_cls = soft_target_cross_entropy(preds, labels_one_hot)
        dummy_loss = 0.0
        for param in self.teacher.parameters():
            dummy_loss += param.sum() * 0.0
        loss = loss_cls
        loss += dummy_loss  # in place: `loss` is the CE tensor itself, so the term reaches the final loss (R26)
        logits_s = getattr(self.student, "distill_logits", None)
        if logits_s is None:
            logits_s = self.student(x)
        resized = F.interpolate(x, size=(self.teacher_img_size, self.teacher_img_size), mode="bilinear",
                                align_corners=False)
        with torch.no_grad():
            logits_t = self.teacher(resized)
        kd = logit_distill_loss(logits_t, logits_s, self.temperature)
        ce = loss_cls
        loss_cls, loss_logit = loss_cls * (1 - self.logit_weight), kd * self.logit_weight
        loss = loss_cls + loss_logit
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.step_log.enabled:
            self.step_log.add("student", [loss.item(), ce.item(), kd.item()])
        return preds, loss_cls, loss


def topk_errors(preds: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """pycls `meters.topk_errors`: top-k error percentages as tensors."""
    _, top = torch.topk(preds, max(ks), dim=1, largest=True, sorted=True)
    correct = top.t().eq(labels.view(1, -1).expand_as(top.t()))
    return [(1.0 - correct[:k, :].reshape(-1).float().sum() / preds.size(0)) * 100.0 for k in ks]
