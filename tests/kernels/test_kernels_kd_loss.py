"""CPU twin and reference op sequence of `fastkd.kernels.kd_loss` / `cross_entropy` against the float64 oracle."""

from __future__ import annotations

import itertools
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_checks import KDCase, check_kd_once

from fastkd.kernels import cross_entropy, kd_loss

BATCHES = (1, 3, 128)
CLASSES = (2, 10, 100, 200, 1000, 1001, 21843)
TEMPERATURES = (1.0, 3.0, 4.0)
SOFT_TERMS = ("kl", "reference_prob_kl", "soft_ce")
REDUCTIONS = ("batchmean", "mean", "sum")

# Every (B, C, T) with each soft term; the reduction rotates so all three meet every shape family.
SHAPE_CASES = [
    KDCase(batch=b, classes=c, temperature=t, soft=soft, reduction=REDUCTIONS[i % 3])
    for i, (b, c, t, soft) in enumerate(itertools.product(BATCHES, CLASSES, TEMPERATURES, SOFT_TERMS))
]
VARIANT_CASES = [
    KDCase(batch=b, classes=c, soft=soft, reduction=reduction, dtype=dtype)
    for (b, c), soft, reduction, dtype in itertools.product(
        [(3, 1001), (128, 100)], SOFT_TERMS, REDUCTIONS, (torch.float32, torch.float16, torch.bfloat16)
    )
]
SPECIAL_CASES = [
    *(KDCase(batch=128, classes=c, temperature=t, soft=s, logit_scale=2500.0)  # logits up to about +-1e4
      for c, t, s in itertools.product((10, 1001, 21843), (1.0, 4.0), SOFT_TERMS)),
    *(KDCase(batch=64, classes=100, soft=s, heads=3, reduction=r) for s, r in itertools.product(SOFT_TERMS, REDUCTIONS)),
    *(KDCase(batch=3, classes=1001, soft=s, strided_rows=True, heads=h) for s in SOFT_TERMS for h in (None, 2)),
    *(KDCase(batch=32, classes=200, soft=s, label_smoothing=0.1, alpha=a) for s in SOFT_TERMS for a in (0.0, 0.7, 1.0)),
    *(KDCase(batch=b, classes=c, with_teacher=False, reduction=r, label_smoothing=ls, heads=h)
      for (b, c), r, ls, h in itertools.product([(1, 2), (128, 1001)], ("mean", "sum"), (0.0, 0.1), (None, 4))),
    KDCase(batch=16, classes=1000, dtype=torch.bfloat16, heads=3, strided_rows=True, label_smoothing=0.1),
    *(KDCase(batch=8, classes=c, soft=s, temperature=t, dtype=torch.float64, label_smoothing=0.1, heads=h)
      for c, s, t, h in [(10, "kl", 1.0, None), (1001, "reference_prob_kl", 3.0, 2), (200, "soft_ce", 4.0, None)]),
    KDCase(batch=8, classes=100, dtype=torch.float64, with_teacher=False, heads=2),
]


@pytest.mark.parametrize("case", SHAPE_CASES + VARIANT_CASES + SPECIAL_CASES, ids=str)
def test_twin_matches_oracle(case: KDCase) -> None:
    check_kd_once("twin", case, seed=zlib.crc32(str(case).encode()))


@pytest.mark.parametrize("case", VARIANT_CASES[::3] + SPECIAL_CASES[::2], ids=str)
def test_reference_sequence_matches_oracle(case: KDCase) -> None:
    check_kd_once("reference", case, seed=zlib.crc32(str(case).encode()))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 40),
    classes=st.integers(2, 3000),
    temperature=st.sampled_from(TEMPERATURES + (0.5, 2.5)),
    soft=st.sampled_from(SOFT_TERMS),
    reduction=st.sampled_from(REDUCTIONS),
    alpha=st.floats(0.0, 1.0),
    label_smoothing=st.sampled_from((0.0, 0.05)),
    logit_scale=st.sampled_from((0.1, 3.0, 100.0, 2500.0)),
    heads=st.sampled_from((None, 2)),
    strided_rows=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_twin_matches_oracle_random_cases(seed: int, **fields) -> None:
    check_kd_once("twin", KDCase(**fields), seed=seed)


def test_int32_labels_are_accepted() -> None:
    student, teacher = torch.randn(8, 10), torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    as_int32 = kd_loss(student, teacher, labels.int(), impl="twin")
    as_int64 = kd_loss(student, teacher, labels, impl="twin")
    assert torch.equal(as_int32.total, as_int64.total)


def test_auto_is_the_twin_on_cpu() -> None:
    student, teacher = torch.randn(8, 10), torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    auto = kd_loss(student, teacher, labels, impl="auto")
    twin = kd_loss(student, teacher, labels, impl="twin")
    for got, want in zip(auto, twin):
        assert torch.equal(got, want)


def test_teacher_receives_no_gradient() -> None:
    student = torch.randn(4, 10, requires_grad=True)
    teacher = torch.randn(4, 10, requires_grad=True)
    kd_loss(student, teacher, torch.randint(0, 10, (4,)), impl="twin").total.backward()
    assert teacher.grad is None and student.grad is not None


def test_backward_twice_with_retained_graph_scales_the_same_gradient() -> None:
    student = torch.randn(4, 10, requires_grad=True)
    total = kd_loss(student, torch.randn(4, 10), torch.randint(0, 10, (4,)), impl="twin").total
    total.backward(torch.tensor(2.0), retain_graph=True)
    first = student.grad.clone()
    total.backward(torch.tensor(1.0))
    torch.testing.assert_close(student.grad, first * 1.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(student_logits=torch.randn(2, 3, 4, 5)), "must have shape"),
        (dict(teacher_logits=torch.randn(4, 9)), "teacher_logits must have shape"),
        (dict(labels=torch.zeros(3, dtype=torch.long)), "labels must have shape"),
        (dict(labels=torch.zeros(4)), "integer class indices"),
        (dict(temperature=0.0), "temperature must be > 0"),
        (dict(alpha=1.5), "alpha must be in"),
        (dict(label_smoothing=1.0), "label_smoothing"),
        (dict(soft="js"), "soft='js'"),
        (dict(reduction="none"), "reduction='none'"),
        (dict(impl="cuda"), "impl='cuda'"),
        (dict(student_logits=torch.randn(4, 1), teacher_logits=torch.randn(4, 1)), "C >= 2"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs: dict, message: str) -> None:
    arguments = dict(student_logits=torch.randn(4, 10), teacher_logits=torch.randn(4, 10),
                     labels=torch.zeros(4, dtype=torch.long))
    arguments.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        kd_loss(**arguments)


def test_cross_entropy_rejects_batchmean() -> None:
    with pytest.raises(ValueError, match="'mean' or 'sum'"):
        cross_entropy(torch.randn(4, 10), torch.zeros(4, dtype=torch.long), reduction="batchmean")
