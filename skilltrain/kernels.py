"""Token-attention scoring kernels over packed sentences: no padded position, one GEMM per block.

The score (:mod:`skilltrain.scoring`) of a sentence's tokens ``x_1..x_L`` with a
unit skill vector ``s`` is ``sum_t softmax_t(x_t . s / T) * (x_t . s) / |x_t|``.
Everything but the products ``x_t . s`` is cheap per (token, skill) pair, yet
touches every pair: computed over a padded (n, L, S) tensor of 13,896 skills,
the softmax and the weighted sum are memory-bound and cost several times the
matrix product (issue 19 measured 7x the pooled time). Here:

* sentences are sorted by length and cut into blocks of whole sentences of
  about :data:`BLOCK_ROWS` tokens (packed: no padding); each run of
  equal-length sentences in a block is a dense (sentences, L, skills) view;
* a block is those token rows x ``cols`` skills, sized so its product fits the
  cores' L2 caches (:func:`block_shape`); it is one GEMM, then the softmax and
  the weighted sum read it while it is still in cache, in place, with exp2 on
  pre-scaled products (:func:`scaled_tokens`, :func:`attend`);
* two-stage ranking scores only C candidate skills per sentence
  (:func:`candidate_scores`: a gather and one batched matmul per bucket).

:func:`~skilltrain.scoring.token_attention_scores` (padded, differentiable) stays
the reference the tests hold these to (1e-5).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence, TypeVar

import torch

from skilltrain.packed import PackedQueries

#: bytes of one GEMM block's output (token rows x skills, float32): a Zen 3 / Xeon core's L2 is 512 KiB-2 MiB
DEFAULT_BLOCK_BYTES = 512 * 1024
#: token rows per block (whole sentences, so about this many): fewer leave the GEMM short of rows (sgemm with m=20 ran
#: at a quarter of the rate of m=256 here)
BLOCK_ROWS = 256
#: skills per block at least (a narrow block pays the Python loop more than it saves in cache misses)
MIN_BLOCK_COLS = 256
#: elements of the (sentences, C, D) gather of a candidate-scoring block: ~2 MB stays in cache (a 118 MB gather of 600
#: sentences' 128 candidates took 110-140 ms in fresh pages, the same rows in 2 MB blocks ~20 ms)
CANDIDATE_BLOCK_ELEMENTS = 2**19
T = TypeVar("T")


@lru_cache(maxsize=1)
def l2_cache_bytes() -> int:
    """One core's L2 cache in bytes (Linux sysfs), else :data:`DEFAULT_BLOCK_BYTES`."""
    for index in range(4):
        base = f"/sys/devices/system/cpu/cpu0/cache/index{index}"
        try:
            with open(f"{base}/level") as level, open(f"{base}/size") as size:
                if level.read().strip() == "2":
                    text = size.read().strip().upper()
                    scale = {"K": 1024, "M": 1024**2}.get(text[-1], 1)
                    return int(text.rstrip("KM")) * scale
        except (OSError, ValueError):
            continue
    return DEFAULT_BLOCK_BYTES


def block_shape(n_skills: int, block_bytes: int | None = None) -> tuple[int, int]:
    """(token rows, skills) per block: the block's float32 product fits ``block_bytes`` (default: one core's L2;
    each thread works on its own blocks, see :func:`in_parallel`)."""
    budget = (block_bytes or l2_cache_bytes()) // 4
    cols = max(MIN_BLOCK_COLS, budget // BLOCK_ROWS)
    return BLOCK_ROWS, min(n_skills, cols)


def in_parallel(work: Callable[[T], None], parts: Sequence[T], device: torch.device) -> None:
    """``work(part)`` for every part: on a CPU, spread over torch's intra-op thread count of Python threads, each
    running torch single-threaded (torch releases the GIL in its kernels).

    Why not torch's own threads: the kernels issue many small operations (a few hundred microseconds each), and
    each of those ends at an OpenMP barrier. On a shared machine one descheduled thread stalls every barrier: on
    the 2-core box at load ~17 the exhaustive kernel took 49-54 s for 128 sentences with 2 OpenMP threads and
    2.2-3.7 s as 2 Python threads of 1 (BENCHMARKS.md "Extraction"). Independent parts have no barrier.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads <= 1 or len(parts) <= 1:
        for part in parts:
            work(part)
        return

    def single_threaded(part: T) -> None:
        torch.set_num_threads(1)  # OpenMP's thread count is per calling thread
        work(part)

    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(min(threads, len(parts))) as pool:
            list(pool.map(single_threaded, parts))
    finally:
        torch.set_num_threads(threads)


def spread(items: Sequence[T], count: int) -> list[list[T]]:
    """``items`` dealt round-robin into at most ``count`` non-empty lists."""
    return [list(items[i::count]) for i in range(min(count, len(items)))]


def attend(dots: torch.Tensor, inv_norms: torch.Tensor, shifted: bool) -> torch.Tensor:
    """(n, s) scores from a block of *scaled* products ``dots`` (n, L, s) = ``x_t . s / (T ln 2)`` and ``inv_norms``
    (n, L) = ``T ln 2 / |x_t|``, so that ``softmax_t = 2^dots / sum 2^dots`` and ``cos = dots * inv_norms``.

    ``shifted``: subtract each column's max first (needed only when ``2^dots`` could leave float32's
    normal range, see :func:`scaled_tokens`). Passes over the block while it is in cache: exp2, sum, one
    in-place product, one batched contraction over tokens (exp2 is ~4x cheaper than exp in torch's CPU kernels).
    """
    weights = torch.sub(dots, dots.amax(dim=1, keepdim=True)).exp2_() if shifted else torch.exp2(dots)
    total = weights.sum(dim=1)
    weighted = torch.bmm(inv_norms.unsqueeze(1).to(dots.dtype), weights.mul_(dots)).squeeze(1)
    return weighted.div_(total)


#: |x_t . s| / (T ln 2) below this for every token: 2^dots stays a normal float32 without shifting (2^±126)
UNSHIFTED_LIMIT = 60.0


def scaled_tokens(tokens: torch.Tensor, temperature: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(tokens / (T ln 2), T ln 2 / |x_t|, shifted): the kernels' inputs; ``shifted`` when the max must be subtracted.

    ``|x_t . s| <= |x_t|`` for a unit skill ``s``, so the largest token norm bounds every exponent of a call.
    """
    scale = 1.0 / (temperature * math.log(2.0))
    tokens = tokens.to(dtype)
    norms = tokens.norm(dim=-1).clamp_(min=1e-6)
    shifted = bool(tokens.shape[0]) and float(norms.max()) * scale > UNSHIFTED_LIMIT
    return tokens * scale, norms.reciprocal_().div_(scale), shifted


def exhaustive_scores(queries: PackedQueries, matrix: torch.Tensor, block_bytes: int | None = None) -> torch.Tensor:
    """(n, S) token-attention scores of every sentence against every row of ``matrix`` (S, D) unit skills.

    Sentences are sorted by length and cut into blocks of whole sentences of about ``BLOCK_ROWS`` tokens;
    per block and skill slice, one GEMM, then each run of equal-length sentences in it is reduced as a
    dense (sentences, L, skills) view of the product: no copy, no padded position. Each thread takes a
    contiguous share of the skills.
    """
    n_skills = matrix.shape[0]
    order = torch.argsort(queries.lengths, stable=True)
    packed = queries[order]
    tokens, inv, shifted = scaled_tokens(packed.tokens, queries.temperature, matrix.dtype)
    rows, cols = block_shape(n_skills, block_bytes)
    blocks = sentence_blocks(packed.lengths.tolist(), rows)
    result = torch.empty((len(packed), n_skills), dtype=matrix.dtype, device=matrix.device)

    def columns(span: range) -> None:
        for block in blocks:
            x = tokens[block.first_token : block.end_token]
            for col in span:
                dots = torch.mm(x, matrix[col : col + cols].T)
                for run in block.runs:
                    t0, t1 = run.first_token - block.first_token, run.end_token - block.first_token
                    view = dots[t0:t1].view(run.count, run.length, -1)
                    result[run.first : run.first + run.count, col : col + cols] = attend(
                        view, inv[run.first_token : run.end_token].view(run.count, run.length), shifted)

    starts = range(0, n_skills, cols)
    shares = max(1, torch.get_num_threads())
    in_parallel(columns, [starts[i * len(starts) // shares : (i + 1) * len(starts) // shares] for i in range(shares)
                          if (i + 1) * len(starts) // shares > i * len(starts) // shares], matrix.device)
    return torch.empty_like(result).index_copy_(0, order.to(result.device), result)


@dataclass(frozen=True)
class Run:
    """``count`` consecutive sentences of ``length`` tokens: sentences [first, first + count), tokens [first_token, end_token)."""

    first: int
    count: int
    length: int
    first_token: int

    @property
    def end_token(self) -> int:
        return self.first_token + self.count * self.length


@dataclass(frozen=True)
class Block:
    runs: tuple[Run, ...]

    @property
    def first_token(self) -> int:
        return self.runs[0].first_token

    @property
    def end_token(self) -> int:
        return self.runs[-1].end_token


def sentence_blocks(lengths: list[int], rows: int) -> list[Block]:
    """Length-sorted sentences cut into blocks of whole sentences of about ``rows`` tokens, each a tuple of equal-length runs."""
    blocks, runs, filled, token = [], [], 0, 0
    for n, length in enumerate(lengths):
        if filled and filled + length > rows:
            blocks.append(Block(tuple(runs)))
            runs, filled = [], 0
        if runs and runs[-1].length == length:
            runs[-1] = Run(runs[-1].first, runs[-1].count + 1, length, runs[-1].first_token)
        else:
            runs.append(Run(n, 1, length, token))
        filled += length
        token += length
    if runs:
        blocks.append(Block(tuple(runs)))
    return blocks


def candidate_scores(queries: PackedQueries, matrix: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(n, C) token-attention scores of each sentence against its own ``candidates`` (n, C) rows of ``matrix``."""
    out = torch.empty(candidates.shape, dtype=matrix.dtype, device=matrix.device)
    tokens, inv, shifted = scaled_tokens(queries.tokens, queries.temperature, matrix.dtype)
    per_block = max(1, CANDIDATE_BLOCK_ELEMENTS // max(1, candidates.shape[1] * matrix.shape[1]))

    def score(buckets: list) -> None:
        for bucket in buckets:
            for first in range(0, bucket.rows.shape[0], per_block):
                rows = bucket.rows[first : first + per_block]
                index = bucket.token_index[first : first + per_block]
                skills = torch.index_select(matrix, 0, candidates[rows].flatten()).view(len(rows), -1, matrix.shape[1])
                dots = torch.bmm(tokens[index], skills.transpose(1, 2))  # (n_b, L, C)
                out[rows] = attend(dots, inv[index], shifted)

    in_parallel(score, spread(list(queries.buckets()), torch.get_num_threads()), matrix.device)
    return out


def score_shares(queries: PackedQueries, matrix: torch.Tensor, skills: torch.Tensor) -> torch.Tensor:
    """(T, m) packed: each token's share of each of its sentence's ``skills`` (n, m): ``softmax_t(x_t . s / T) * cos(x_t, s)``
    (the token's term of the score) over the sum of the positive terms, 0 where the term is negative (evidence)."""
    out = torch.empty((queries.tokens.shape[0], skills.shape[1]), dtype=torch.float32, device=matrix.device)
    tokens = queries.tokens.to(matrix.dtype)

    def share(buckets: list) -> None:
        for bucket in buckets:
            block = tokens[bucket.token_index]
            dots = torch.bmm(block, matrix[skills[bucket.rows]].transpose(1, 2)).float()  # (n_b, L, m)
            terms = torch.softmax(dots / queries.temperature, dim=1) * dots / block.float().norm(dim=-1, keepdim=True).clamp(min=1e-6)
            terms = terms.clamp_(min=0)
            out[bucket.token_index.flatten()] = (terms / terms.sum(dim=1, keepdim=True).clamp(min=1e-12)).flatten(0, 1)

    in_parallel(share, spread(list(queries.buckets()), torch.get_num_threads()), matrix.device)
    return out


def measured_matmul_gflops(rows: int = 256, dim: int = 384, cols: int = 4096, seconds: float = 1.0) -> float:
    """This machine's float32 GEMM rate at the exhaustive kernel's block shape (GFLOP/s, all torch threads)."""
    import time

    a, b = torch.randn(rows, dim), torch.randn(cols, dim)
    for _ in range(3):
        torch.mm(a, b.T)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b.T)
        count += 1
    return 2.0 * rows * dim * cols * count / (time.perf_counter() - started) / 1e9
