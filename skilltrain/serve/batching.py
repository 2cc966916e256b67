"""The model replica: a :class:`SkillExtractor` fed by Serve's request batching (``@serve.batch``).

Each text of a request is one item in the replica's batch queue, weighed by its sentence count
(Serve's ``batch_size_fn``), so a model call gathers up to ``max_batch_size`` *sentences* from
every request waiting, and one request with many texts is cut across calls the same way. Items
wait at most ``batch_wait_ms`` for company. A call groups its texts by their options (top_k,
min_score, split, exhaustive, diverse) and runs :meth:`SkillExtractor.extract` once per group, so the answer is the
extractor's own result (``dataclasses.asdict``), whatever fields it grows. Identical sentences
in one call are encoded once (the extractor deduplicates).

The model call runs on the replica's event loop, blocking it, on purpose: Serve forms the next
batch as soon as the current one has *started* (it then waits for its turn), so a model call in a
worker thread lets the queue be cut into many small batches, each holding what arrived within
``batch_wait_ms``, which then run one after the other (measured: no gain in sentences/s from 1 to
32 clients). Blocked, the replica takes in the requests that arrived meanwhile all at once when the
call returns, and the next batch gathers them. Serve's health checks run on its own loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from ray import serve

from skilltrain.serve import metrics
from skilltrain.serve.config import DEFAULT_BATCH_SENTENCES, AppConfig
from skilltrain.serve.messages import ExtractAnswer, ExtractJob, ExtractOptions, Timing


@dataclass(frozen=True)
class TextItem:
    """One text in the batch queue."""

    text: str
    options: ExtractOptions
    sentences: int  # its weight in the batch, capped at the batch size (a longer text is a batch of its own)
    queued_at: float


@dataclass(frozen=True)
class TextDone:
    result: dict[str, Any]
    queue_s: float
    model_s: float


def batch_weight(items: list[TextItem]) -> int:
    return sum(item.sentences for item in items)


@serve.deployment(name="SkillModel")
class SkillModel:
    """Holds the encoder and the skill index; answers :class:`ExtractJob` s, batched across requests."""

    def __init__(self, config: dict[str, Any]):
        import torch

        from skillgen.common import resolve_esco_path
        from skilltrain.extraction.extractor import SkillExtractor
        from skilltrain.serve.modeldir import local_model_dir, model_info

        self.config = AppConfig.model_validate(config)
        cfg = self.config
        torch.set_num_threads(cfg.threads)  # before the encoder is built: ONNX Runtime sizes its pool from it
        local_dir = local_model_dir(cfg.model)
        taxonomy = resolve_esco_path(cfg.esco)
        self.extractor = SkillExtractor.from_pretrained(local_dir, taxonomy, backend=cfg.backend, device=cfg.device,
                                                        max_seq_length=cfg.max_seq_length)
        self._info = model_info(cfg.model, local_dir, taxonomy, self.extractor.n_skills, self.extractor.backend,
                                str(self.extractor.encoder.device), self.extractor.encoder.max_seq_length)
        self.run_batch.set_max_batch_size(cfg.max_batch_size)
        self.run_batch.set_batch_wait_timeout_s(cfg.batch_wait_ms / 1e3)

    def info(self) -> dict[str, Any]:
        return self._info

    async def extract(self, job: ExtractJob) -> ExtractAnswer:
        """All texts of one request, each through the batch queue; answers in request order."""
        arrived = time.perf_counter()
        limit = self.config.max_batch_size
        items = [TextItem(text, job.options, min(limit, self._sentences(text, job.options)), time.perf_counter())
                 for text in job.texts]
        done = await asyncio.gather(*(self.run_batch(item) for item in items))
        timing = Timing(queue_s=max((d.queue_s for d in done), default=0.0), model_s=max((d.model_s for d in done), default=0.0),
                        replica_s=time.perf_counter() - arrived)
        return ExtractAnswer([d.result for d in done], timing)

    def _sentences(self, text: str, options: ExtractOptions) -> int:
        return len(self.extractor.split(text)) if options.split else 1

    @serve.batch(max_batch_size=DEFAULT_BATCH_SENTENCES["cpu"], batch_wait_timeout_s=0.005, batch_size_fn=batch_weight)
    async def run_batch(self, items: list[TextItem]) -> list[TextDone]:
        started = time.perf_counter()
        results = self._extract(items)  # blocking on purpose (see the module's docstring)
        model_s = time.perf_counter() - started
        metrics.record_batch(texts=len(items), sentences=sum(len(r["sentences"]) for r in results))
        return [TextDone(result, started - item.queued_at, model_s) for item, result in zip(items, results)]

    def _extract(self, items: list[TextItem]) -> list[dict[str, Any]]:
        """One :meth:`SkillExtractor.extract` per group of equal options, results back in item order."""
        groups: dict[ExtractOptions, list[int]] = {}
        for n, item in enumerate(items):
            groups.setdefault(item.options, []).append(n)
        results: dict[int, dict[str, Any]] = {}
        for options, rows in groups.items():
            extracted = self.extractor.extract([items[n].text for n in rows], **options.extract_kwargs())
            results.update((n, asdict(skills)) for n, skills in zip(rows, extracted))
        return [results[n] for n in range(len(items))]
