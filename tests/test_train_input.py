"""The input pipeline: prefetched batches are exactly the batches the old in-step path built."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers.training import CPU, loop_config, loop_inputs  # noqa: F401  (module fixture)

from skilltrain.training.gradcache import tokenize
from skilltrain.training.loader import Prefetcher, build_step, pretokenize
from skilltrain.training.train import global_batch, setup


def old_path_groups(run, step: int):
    """What train_step tokenised before the loader: this rank's rows of the augmented global batch, in the step."""
    epoch, step_in_epoch = run.schedule.locate(step)
    batch = global_batch(run.data, run.schedule.plans[epoch], run.cfg, epoch, step_in_epoch)
    b, k = run.cfg.batch_size, len(batch.negatives) // len(batch.texts)
    rows = slice(run.rank * b, (run.rank + 1) * b)
    texts = [batch.texts[rows], batch.labels[rows]] + ([batch.negatives[rows.start * k : rows.stop * k]] if k else [])
    return [tokenize(run.encoder, t) for t in texts], batch


def test_prefetched_batches_equal_the_old_path(loop_inputs, tiny_encoder_dir, tmp_path):
    from skilltrain.training.fit import prepare

    # 2 ranks x 5, half the sentences joined (memoised and fresh tokenisation), hard negatives, two epochs
    cfg = loop_config(loop_inputs, tiny_encoder_dir, tmp_path, workers=2, batch_size=5, augment_prob=0.5, epochs=2,
                      hard_negatives=2, hard_negative_pool=4, val_sets=[])
    data, _ = prepare(cfg)
    base = setup(cfg, data, CPU)
    tokens = pretokenize(base)
    for rank in (0, 1):
        run = dataclasses.replace(base, rank=rank, size=2)
        steps = range(run.schedule.total)
        with Prefetcher(lambda s: build_step(run, tokens, s), steps) as loader:
            got = list(loader)
        assert [b.step for b in got] == list(steps)
        for step, batch in zip(steps, got):
            expected, augmented = old_path_groups(run, step)
            assert len(batch.groups) == len(expected) == 3
            for g, e in zip(batch.groups, expected):
                assert torch.equal(g.input_ids, e.input_ids) and torch.equal(g.attention_mask, e.attention_mask)
            assert np.array_equal(batch.cls.numpy(), augmented.cls) and np.array_equal(batch.partner_cls.numpy(), augmented.partner_cls)
            assert np.array_equal(batch.neg_cls.numpy(), augmented.neg_cls)


def test_prefetcher_raises_at_the_failing_step_and_stops_when_closed():
    def make(step):
        if step == 3:
            raise ValueError("bad step")
        return step

    seen = []
    with pytest.raises(ValueError, match="bad step"):
        with Prefetcher(make, range(6)) as loader:
            seen.extend(loader)
    assert seen == [0, 1, 2]
    loader = Prefetcher(lambda s: s, range(10**6), depth=2)
    assert next(iter(loader)) == 0
    loader.close()
    assert not loader.thread.is_alive()


def test_gradcache_chunk_sized_from_memory(tiny_encoder_dir, monkeypatch):
    from skilltrain.model import BiEncoder
    from skilltrain.training import gradcache
    from skilltrain.training.cli import _chunk

    encoder = BiEncoder.from_pretrained(tiny_encoder_dir)
    per_text = gradcache.activation_bytes_per_text(encoder.transformer, encoder.max_seq_length, 4)
    monkeypatch.setattr(gradcache, "free_memory_bytes", lambda device: 100 * per_text)
    assert gradcache.chunk_for_memory(encoder, 40, CPU, bf16=False) == 0  # 50 texts fit in half: GradCache off
    assert gradcache.chunk_for_memory(encoder, 400, CPU, bf16=False) == 50
    assert gradcache.chunk_for_memory(encoder, 400, CPU, bf16=False, sharing=2) == 25  # two workers share the host
    assert _chunk("auto") == gradcache.AUTO_CHUNK and _chunk("64") == 64
