"""The input pipeline: each step's tokenised batch, built ahead of the step on a background thread.

Tokenising inside the step would put it on the critical path while the cores or the
GPU wait. A :class:`Prefetcher` thread builds step ``s + 1`` (and ``s + 2``) while step
``s`` trains:

* the global batch is the sampler's and augmentation's, exactly as the in-step path's
  (:func:`skilltrain.training.context.global_batch`: same plan, same texts for a seed);
* label texts never change, so they are tokenised once for the run
  (:class:`Pretokenized`), and so are unaugmented sentences (memoised per pair);
  only joined sentences are tokenised per step, on the loader thread;
* only this rank's rows are tokenised; the class ids stay global (the loss masks);
* on CUDA the tensors are put in pinned memory so the step's copies are non-blocking.

The HF fast tokenizer runs in Rust and releases the GIL, so the thread overlaps with
torch's compute instead of competing with it. :func:`build_step` is also the
single-threaded path (tests compare the two, and the batches with the in-step path's).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from skilltrain.training.augment import NO_PARTNER
from skilltrain.training.context import Run, global_batch
from skilltrain.training.gradcache import TokenGroup



@dataclass(frozen=True)
class StepBatch:
    """This rank's tokenised share of one global batch; class ids are the whole global batch's."""

    step: int
    groups: list[TokenGroup]  # sentences, labels[, hard negatives]: this rank's rows
    cls: torch.Tensor
    partner_cls: torch.Tensor
    neg_cls: torch.Tensor

    @property
    def tokens(self) -> int:
        """Real (unpadded) tokens this rank encodes: what the step's FLOPs scale with."""
        return int(sum(int(g.attention_mask.sum()) for g in self.groups))

    def pinned(self) -> "StepBatch":
        groups = [TokenGroup(g.input_ids.pin_memory(), g.attention_mask.pin_memory()) for g in self.groups]
        return StepBatch(self.step, groups, self.cls, self.partner_cls, self.neg_cls)


class Pretokenized:
    """Token ids per text, computed once (labels) or on first use (unaugmented sentences), padded on demand."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.memo: dict[str, list[int]] = {}

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"] if len(texts) else []

    def remember(self, texts: Sequence[str]) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self.memo))
        self.memo.update(zip(todo, self.ids(todo)))

    def group(self, texts: Sequence[str], memoised: Sequence[bool] | None = None) -> TokenGroup:
        """``texts`` padded as ``tokenizer(texts, padding=True, truncation=True)`` pads them."""
        memoised = [True] * len(texts) if memoised is None else memoised
        self.remember([t for t, m in zip(texts, memoised) if m])
        fresh = iter(self.ids([t for t, m in zip(texts, memoised) if not m]))
        rows = [self.memo[t] if m else next(fresh) for t, m in zip(texts, memoised)]
        return self.pad(rows)

    def pad(self, rows: list[list[int]]) -> TokenGroup:
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            cols = slice(width - len(r), width) if self.left else slice(0, len(r))
            ids[i, cols], mask[i, cols] = torch.tensor(r, dtype=torch.long), 1
        return TokenGroup(ids, mask)


def build_step(run: "Run", tokens: Pretokenized, step: int) -> StepBatch:
    """Step ``step``'s batch for this rank: the in-step path's global batch, tokenised from the memo where it can be."""
    cfg = run.cfg
    epoch, step_in_epoch = run.schedule.locate(step)
    batch = global_batch(run.data, run.schedule.plans[epoch], cfg, epoch, step_in_epoch)
    rows = slice(run.rank * cfg.batch_size, (run.rank + 1) * cfg.batch_size)
    k = len(batch.negatives) // len(batch.texts)
    unjoined = [int(p) == NO_PARTNER for p in batch.partner_cls[rows]]
    groups = [tokens.group(batch.texts[rows], unjoined), tokens.group(batch.labels[rows])]
    if k:
        groups.append(tokens.group(batch.negatives[rows.start * k : rows.stop * k]))
    as_tensor = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64))  # noqa: E731
    built = StepBatch(step, groups, as_tensor(batch.cls), as_tensor(batch.partner_cls), as_tensor(batch.neg_cls))
    return built.pinned() if run.device.type == "cuda" else built  # pinned: the step's copies do not block


def pretokenize(run: "Run") -> Pretokenized:
    """The run's label texts tokenised once (positives and hard-negative labels)."""
    tokens = Pretokenized(run.encoder.tokenizer, run.encoder.max_seq_length)
    tokens.remember(sorted(set(run.data.labels) | set(run.data.class_labels)))
    return tokens


class Prefetcher:
    """Iterates ``make(step)`` for ``steps`` in order, computed up to ``depth`` steps ahead on a daemon thread.

    An exception in ``make`` is raised by the iteration at that step. :meth:`close` (or
    leaving the ``with`` block) stops the thread; the iterator may be abandoned early.
    """

    def __init__(self, make: Callable[[int], StepBatch], steps: range, depth: int = 2):
        self.make, self.steps = make, steps
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._fill, name="skilltrain-prefetch", daemon=True)
        self.thread.start()

    def _fill(self) -> None:
        for step in self.steps:
            try:
                item: object = self.make(step)
            except BaseException as exc:  # handed to the consumer, raised there
                item = exc
            while not self.stopped.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self.stopped.is_set() or isinstance(item, BaseException):
                return

    def __iter__(self) -> Iterator[StepBatch]:
        for _ in self.steps:
            item = self.queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def loader_for(run: "Run", start: int = 0, depth: int = 2) -> Prefetcher:
    """The run's batches from step ``start`` to the end, prefetched (use as a context manager)."""
    return Prefetcher(partial(build_step, run, pretokenize(run)), range(start, run.schedule.total), depth)
