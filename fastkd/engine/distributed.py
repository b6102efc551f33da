"""Data-parallel training under `torchrun`: process-group setup/teardown, rank helpers and the few collectives.

The run's semantics do not depend on the number of processes N. `data.batch_size` stays the global batch; every
rank builds the same global batch (indices, augmentation parameters from the rank-free seed) and works on its
contiguous block of rows (`shard_rows`). Each rank's loss is its share B_r/B of the global loss: a per-sample mean
computed on the rank's rows times B_r/B is the rank's part of the global mean, and a term that does not decompose
over samples (torch.dist's unsquared norm, MaxDropout's batch min/max, batch-norm statistics) is computed from
all-reduced sums, so every rank holds its global value and the shares add up to 1. Gradients are then summed over
ranks (not averaged), which gives the single-process gradient. Every rank keeps the same torch RNG stream (same
seed, same draws: random tensors are drawn for the global batch and sliced), so random ops match one process too.

Outside torchrun and srun steps of several tasks (no RANK/WORLD_SIZE in the environment) everything here is a
no-op and N = 1.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import timedelta
from typing import Any, Iterable

import torch
import torch.distributed as dist
import torch.nn as nn

from .. import launch
from ..kernels.batch_norm import swap_batchnorm
from ..kernels.global_batch import sum_across_ranks


FAILURE_KEY = "fastkd/failed/"
"""Store key prefix under which a failing rank leaves its one-line error for rank 0 to print."""


# ------------------------------------------------------------------------------------------ process group
def launched_by_torchrun() -> bool:
    """Whether this process is a torchrun worker (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def standalone_launch(nproc: int) -> list[str]:
    """The command prefix that starts `nproc` workers on this machine: `torchrun --standalone` (a free port each)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


def cpu_threads_per_process(nproc: int) -> int:
    """The machine's cores split evenly between `nproc` processes that share them (OMP_NUM_THREADS of each)."""
    return max(1, (os.cpu_count() or 1) // nproc)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def setup(on_cuda: bool, timeout_s: float) -> None:
    """Join the process group torchrun (or an `srun` step, read as torchrun's variables) describes (NCCL on the
    LOCAL_RANK GPU, gloo on CPU); no-op for a process started alone or when already joined. `timeout_s` bounds every
    collective, so a dead rank ends the job instead of a hang."""
    launch.adopt_srun_step()
    if not launched_by_torchrun() or dist.is_initialized():
        return
    if on_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if on_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


class Terminated(Exception):
    """torchrun stopped this process (SIGTERM), after another rank ended."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated("stopped by torchrun after another rank ended")


def lost_contact(exc: BaseException) -> bool:
    """Whether `exc` says another rank is gone (a broken or timed-out collective, or torchrun's stop), rather
    than an error of this rank's own."""
    if isinstance(exc, (Terminated, dist.DistError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("gloo" in text.lower() or "Connection closed by peer" in text)


def barrier() -> None:
    """Wait for every rank (a no-op for one process)."""
    if dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    """Wait for every rank (rank 0 may still be writing), then leave the process group."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def is_active() -> bool:
    """Whether this process is one of several (a process group of size > 1 is up)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0: the only process that writes logs, checkpoints and the progress bar."""
    return rank() == 0


# ------------------------------------------------------------------------------------------- batch rows
def shard_rows(total: int, of_rank: int | None = None) -> slice:
    """The contiguous block of rows of a `total`-row global batch that a rank works on: blocks in rank order, the
    first `total % N` ranks one row longer (torch.tensor_split), so rank order is the single-process order."""
    n, r = world_size(), rank() if of_rank is None else of_rank
    base, extra = divmod(total, n)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


# ------------------------------------------------------------------------------------------ collectives
def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce of a detached tensor (`sum`, `min` or `max`); a no-op for one process."""
    if is_active():
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
                                    "max": dist.ReduceOp.MAX}[op])
    return tensor


def any_rank(flag: bool) -> bool:
    """Whether `flag` is set on any rank (e.g. a Ctrl-C that reached the ranks at different iterations)."""
    if not is_active():
        return flag
    device = torch.device("cuda", local_rank()) if dist.get_backend() == "nccl" else torch.device("cpu")
    return bool(all_reduce_(torch.tensor([float(flag)], device=device), "max"))


def on_every_rank(flag: torch.Tensor) -> torch.Tensor:
    """Whether a device bool `flag` holds on every rank (one tiny all-reduce), so that ranks decide alike."""
    if not is_active():
        return flag
    return all_reduce_(flag.to(torch.float32).reshape(1), "min").reshape(()) > 0


def sum_gradients(params: Iterable[nn.Parameter]) -> None:
    """Sum every gradient over ranks in one flat all-reduce (the ranks' losses are shares of the global loss, so
    the sum is the single-process gradient). Parameters without a gradient (an unused exit) are the same on every
    rank, since every rank runs the same steps, and are left out."""
    if not is_active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def gather_objects(obj: Any) -> list[Any]:
    """`obj` of every rank, in rank order (e.g. RNG states for the checkpoint)."""
    if not is_active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


# ------------------------------------------------------------------------------------------- batch norm
class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch: per-channel sums all-reduced through
    torch.distributed.nn (so the gradient flows across ranks), for devices where nn.SyncBatchNorm (CUDA only)
    is not available. Same parameters, buffers and state_dict keys as the batch norm it replaces."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-d input (got {input.dim()}-d)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training or not self.track_running_stats) or not is_active():
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = all_reduce_(torch.tensor(float(x.numel() // x.shape[1]), dtype=torch.float64))
        n = float(count)
        mean = sum_across_ranks(x.sum(dims)) / n
        centred = x - mean.view(shape)
        var = sum_across_ranks((centred * centred).sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.detach() * (n / max(n - 1, 1.0)), alpha=factor)
        return out


def convert_batchnorm(module: nn.Module, on_cuda: bool) -> nn.Module:
    """Every batch norm of `module` with global-batch statistics: nn.SyncBatchNorm on CUDA, AllReduceBatchNorm
    elsewhere. Parameters are moved over (the same objects), so build the optimizer after this."""
    if on_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)

    def make(bn: nn.modules.batchnorm._BatchNorm) -> nn.Module | None:
        if isinstance(bn, AllReduceBatchNorm):
            return None
        return AllReduceBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    return swap_batchnorm(module, make)


# ----------------------------------------------------------------------------------------------- failure
def report_failure(message: str) -> None:
    """Leave this rank's one-line error where rank 0 can read it (the rendezvous store)."""
    store = _store()
    if store is not None:
        try:
            store.set(f"{FAILURE_KEY}{rank()}", message)
        except Exception:  # the store may be gone already; rank 0 then reports the lost contact
            pass


def failed_rank_line() -> str | None:
    """On rank 0 after a collective failed: `rank R failed: <its error>` for the first rank that left one."""
    store = _store()
    if store is None:
        return None
    for other in range(1, world_size()):
        key = f"{FAILURE_KEY}{other}"
        try:
            if store.check([key]):
                return f"rank {other} failed: {store.get(key).decode(errors='replace')}"
        except Exception:
            return None
    return None


def _store():
    if not (dist.is_available() and dist.is_initialized()):
        return None
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:
        return None

