"""Every collective the trainer uses, in one place (no ``torch.distributed`` call lives elsewhere).

The rest of the training code asks :func:`world` for ``(rank, size)`` and calls
the helpers below, all of which are no-ops in a single process, so the same
step code runs under Ray Train, under ``torch.multiprocessing`` in the tests,
and in a plain script.

* :func:`gather_with_grad`: the global negative pool. Forward is an
  all-gather; backward SUMs every rank's gradient for this rank's slice.
* :func:`allreduce_gradients`: parameter gradients are SUMMED, not averaged
  (each rank's loss is its share of the global-batch loss, see
  :mod:`skilltrain.training.loss`).
* :func:`broadcast_module`, :func:`allreduce_sum`, :func:`allreduce_max`:
  identical start weights, the global loss, the peak memory over workers.
* :func:`gather_rows`: validation's label embeddings, encoded a share per rank.
* :func:`backend_for`: NCCL for CUDA tensors, gloo on CPU; :func:`group_of_one` for scripts.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Iterable, Iterator

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def backend_for(use_gpu: bool) -> str:
    """The process-group backend for a run: NCCL moves CUDA tensors, gloo CPU ones (and lacks reduce_scatter)."""
    return "nccl" if use_gpu else "gloo"


@contextlib.contextmanager
def group_of_one(use_gpu: bool) -> Iterator[str]:
    """A process group of this process alone (loopback), with the backend a run on this device gets.

    For one-process scripts (the one-GPU benchmark): the collectives then run for real,
    NCCL included, without Ray. Yields the backend's name.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group(backend_for(use_gpu), init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield dist.get_backend()
    finally:
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice.

    Each rank's loss depends on all ranks' embeddings, so the gradient of the
    total loss w.r.t. my embeddings is the sum over ranks of d(loss_r)/d(mine):
    an all_reduce of the full gradient, then my slice. (all_reduce rather than
    reduce_scatter because gloo lacks the latter.) Equal slice sizes assumed.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, size = world()
        ctx.rank, ctx.rows = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenation of ``x`` over all ranks (rank order), differentiable.

    Without a process group it is ``x`` itself. With one, the collective runs even for a
    world of one (a copy), so a one-GPU run exercises the same NCCL path as many GPUs.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return x
    return _GatherWithGrad.apply(x)


def allreduce_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """SUM gradients over ranks in one flat buffer (each rank holds its share of the global loss's gradient)."""
    if world()[1] == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def _allreduce_scalar(value: float, device: torch.device | str, op: str) -> float:
    if world()[1] == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
    return float(t.item())


def allreduce_sum(value: float, device: torch.device | str = "cpu") -> float:
    """Sum of a scalar over ranks (our local losses are shares, so this is the global loss)."""
    return _allreduce_scalar(value, device, "SUM")


def allreduce_max(value: float, device: torch.device | str = "cpu") -> float:
    """Max of a scalar over ranks (peak memory: the figure that decides whether a run fits)."""
    return _allreduce_scalar(value, device, "MAX")


def gather_rows(x: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``x`` (same trailing shape, any number of rows), in rank order; ``[x]`` alone.

    Rows are padded to the longest rank's count for the collective (all_gather needs equal
    shapes), then cut back.
    """
    if world()[1] == 1:
        return [x]
    counts = [torch.zeros(1, dtype=torch.int64, device=x.device) for _ in range(world()[1])]
    dist.all_gather(counts, torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device))
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return [part[: int(c.item())] for part, c in zip(parts, counts)]


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank: an identical start, whatever each rank loaded."""
    if world()[1] == 1:
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, 0)
