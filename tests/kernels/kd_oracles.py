"""float64 oracles: the textbook formulas, one head at a time, no shared code with the kernels under test."""

from __future__ import annotations

import torch


def kd_loss_oracle(
    student: torch.Tensor,
    teacher: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
    soft: str,
    reduction: str,
    label_smoothing: float,
) -> dict[str, torch.Tensor]:
    """Loss terms in float64 for (B, C) or (K, B, C) `student` (a float64 leaf so tests can differentiate it).

    Returns total (differentiable), ce and soft with the same shapes as `fastkd.kernels.KDLoss`.
    """
    heads = student if student.dim() == 3 else student.unsqueeze(0)
    batch, classes = heads.shape[1:]
    ce_heads, soft_heads = [], []
    for logits in heads:
        log_p = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        nll = -log_p.gather(1, labels.view(-1, 1)).squeeze(1)
        ce_rows = (1 - label_smoothing) * nll - label_smoothing * log_p.mean(dim=-1)
        if teacher is None:
            soft_rows = torch.zeros_like(ce_rows)
        else:
            soft_rows = _soft_rows(logits, teacher.double(), temperature, soft)
        ce_scale = 1.0 if reduction == "sum" else 1.0 / batch
        soft_scale = {"batchmean": 1.0 / batch, "mean": 1.0 / (batch * classes), "sum": 1.0}[reduction]
        ce_heads.append(ce_rows.sum() * ce_scale)
        soft_heads.append(soft_rows.sum() * soft_scale)
    ce, soft_terms = torch.stack(ce_heads), torch.stack(soft_heads)
    total = ((1 - alpha) * ce + alpha * soft_terms).sum()
    if student.dim() == 2:
        ce, soft_terms = ce[0], soft_terms[0]
    return {"total": total, "ce": ce.detach(), "soft": soft_terms.detach()}


def _soft_rows(logits: torch.Tensor, teacher: torch.Tensor, temperature: float, soft: str) -> torch.Tensor:
    log_p_s = logits / temperature - torch.logsumexp(logits / temperature, dim=-1, keepdim=True)
    log_p_t = teacher / temperature - torch.logsumexp(teacher / temperature, dim=-1, keepdim=True)
    p_t = log_p_t.exp()
    if soft == "kl":
        return (p_t * (log_p_t - log_p_s)).sum(-1) * temperature**2
    if soft == "reference_prob_kl":
        # KLDivLoss(input=p_s, target=p_t): target * (log target - input), with 0 * log 0 = 0.
        return (torch.xlogy(p_t, p_t) - p_t * log_p_s.exp()).sum(-1)
    if soft == "soft_ce":
        return -(p_t * log_p_s).sum(-1)
    raise ValueError(soft)


def ema_closed_form(initial: torch.Tensor, sources: list[torch.Tensor], decay: float) -> torch.Tensor:
    """e_k = d^k e_0 + sum_j (1-d) d^(k-1-j) p_j in float64, for the sequence of source values p_0..p_{k-1}."""
    steps = len(sources)
    result = initial.double() * decay**steps
    for j, source in enumerate(sources):
        result = result + (1 - decay) * decay ** (steps - 1 - j) * source.double()
    return result
