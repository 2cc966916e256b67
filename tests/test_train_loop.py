"""The training loop in-process (no Ray): schedule ends, precision, hard negatives, weight averaging.

``setup`` / ``resume`` / ``train`` take a ``report`` function instead of calling Ray
Train, so these tests run the real loop with a list as the report sink.
"""

from __future__ import annotations

import contextlib
import json
from functools import partial

import numpy as np
import pytest
import torch
from helpers.training import CPU, N_SKILLS, loop_config, loop_inputs  # noqa: F401  (module fixture)

from skilltrain.config import TrainConfig
from skilltrain.training import hardneg
from skilltrain.training.average import choose_alpha, interpolate
from skilltrain.training.distributed import backend_for
from skilltrain.training.sampler import plan_epoch
from skilltrain.training.train import META_FILE, LoopState, autocast_for, setup, train


def run_in_process(cfg: TrainConfig):
    from skilltrain.training.fit import prepare

    data, _ = prepare(cfg)
    run = setup(cfg, data, CPU)
    reports: list[tuple[dict, dict | None]] = []
    train(run, LoopState(), lambda metrics, d: reports.append((metrics, json.loads((d / META_FILE).read_text()) if d else None)))
    return run, reports


def test_shorter_last_epoch_still_ends_with_validation_and_checkpoint(loop_inputs, tiny_encoder_dir, tmp_path):
    """Issue 11: when epoch 2's plan is a batch shorter, the run used to end without its final validation/checkpoint."""
    from skilltrain.training.fit import prepare

    cfg = loop_config(loop_inputs, tiny_encoder_dir, tmp_path, epochs=2)
    cls = prepare(cfg)[0].cls
    lengths = {s: (len(plan_epoch(cls, 10, s, 0)), len(plan_epoch(cls, 10, s, 1))) for s in range(60)}
    seed = next(s for s, (a, b) in lengths.items() if b == a - 1)
    run, reports = run_in_process(cfg.model_copy(update={"seed": seed}))
    total = sum(lengths[seed])
    assert run.schedule.total == total
    assert [m["step"] for m, _ in reports] == [total]  # eval_every is never reached: only the final report
    metrics, meta = reports[-1]
    assert "val_rp5" in metrics and metrics["epoch"] == 1
    assert meta["step"] == total and meta["history"][-1]["step"] == total
    assert len(meta["losses"]) == total and all(np.isfinite(meta["losses"]))  # every step's loss: the report's plot


def test_hard_negatives_train_in_the_loop(loop_inputs, tiny_encoder_dir, tmp_path):
    cfg = loop_config(loop_inputs, tiny_encoder_dir, tmp_path, hard_negatives=2, hard_negative_pool=4, max_steps=2, val_sets=[])
    run, reports = run_in_process(cfg)
    assert run.data.hard_negatives.shape == (N_SKILLS, 4)
    assert [m["step"] for m, _ in reports] == [2] and np.isfinite(reports[0][0]["loss"])


def test_bf16_autocast_on_cpu_keeps_loss_and_gradients_fp32(tiny_encoder_dir):
    """The CUDA path's precision contract, checked with CPU bf16: encoder in bf16, loss and gradients in fp32."""
    from helpers.training import compute_gradients, make_batch

    from skilltrain.model import BiEncoder

    encoder = BiEncoder.from_pretrained(tiny_encoder_dir).eval()
    batch = make_batch(n=8)
    bf16 = partial(torch.autocast, "cpu", dtype=torch.bfloat16)
    linear_dtypes = []
    linear = next(m for m in encoder.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, out: linear_dtypes.append(out.dtype))
    with bf16():
        encoder.embed(batch.texts[:2])
    assert linear_dtypes == [torch.bfloat16]  # the encoder's matmuls do run in bf16
    for chunk in (0, 4):
        encoder.zero_grad()
        loss = compute_gradients(encoder, batch, 8, gradcache_chunk=chunk, autocast=bf16)
        assert isinstance(loss, float) and np.isfinite(loss)
        assert {p.grad.dtype for p in encoder.parameters() if p.grad is not None} == {torch.float32}
        assert {p.dtype for p in encoder.parameters()} == {torch.float32}
    # what the trainer picks: bf16 only on CUDA; NCCL on GPU, gloo on CPU
    assert autocast_for(CPU, bf16=True) is contextlib.nullcontext
    cuda_autocast = autocast_for(torch.device("cuda"), bf16=True)
    assert cuda_autocast.func is torch.autocast and cuda_autocast.args == ("cuda",)
    assert cuda_autocast.keywords == {"dtype": torch.bfloat16}
    assert autocast_for(torch.device("cuda"), bf16=False) is contextlib.nullcontext
    assert backend_for(True) == "nccl" and backend_for(False) == "gloo"


def test_fp16_weights_on_disk_load_as_fp32_master_weights(tiny_encoder_dir, tmp_path):
    from skilltrain.model import BiEncoder

    encoder = BiEncoder.from_pretrained(tiny_encoder_dir)
    encoder.transformer.half()
    encoder.save(tmp_path / "fp16")
    again = BiEncoder.from_pretrained(tmp_path / "fp16")
    assert {p.dtype for p in again.parameters()} == {torch.float32}


def test_mined_negatives_are_nearest_other_skills_never_own_labels():
    emb = np.array([[1.0, 0.0], [0.99, 0.14], [0.95, 0.31], [0.0, 1.0], [0.6, 0.8]])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = ["weld", "weld metal", "solder", "bake", "cook"]
    exclude = hardneg.own_label_classes(labels, {"weld": ["Weld Metal", "fuse metal"]})
    assert exclude[0] == {1} and exclude[1] == {0} and exclude[2] == set()
    table = hardneg.mine(emb, 2, exclude)
    assert table[0].tolist() == [2, 4]  # 1 is "weld"'s own alternative label: never its negative
    assert table[1].tolist() == [2, 4]  # ... nor the other way round
    assert all(c not in row for c, row in enumerate(table))
    drawn = hardneg.draw(table, np.array([0, 1, 3]), 2, np.random.default_rng(0))
    assert drawn.shape == (3, 2) and all(set(d) == set(table[c]) for d, c in zip(drawn, [0, 1, 3]))
    with pytest.raises(ValueError):
        hardneg.mine(emb, 5)


def test_loss_with_hard_negatives_matches_formula_and_masks_own_and_partner_class():
    from skilltrain.training.loss import contrastive_loss, false_negative_mask

    torch.manual_seed(0)
    unit = lambda n: torch.nn.functional.normalize(torch.randn(n, 8), dim=-1)  # noqa: E731
    s, l_, negs = unit(4), unit(4), unit(8)
    cls, partner = torch.tensor([0, 1, 2, 3]), torch.tensor([-1, 3, -1, -1])
    neg_cls = torch.tensor([5, 6, 0, 7, 8, 9, 3, 1])  # row 0's 2nd negative is 0's own class; row 1's partner is 3
    loss = contrastive_loss(s, l_, cls, partner, symmetric=False, negatives=negs, neg_cls=neg_cls)
    logits = 20 * s @ torch.cat([l_, negs]).T
    mask = torch.cat([false_negative_mask(cls, partner), (cls[:, None] == neg_cls) | (partner[:, None] == neg_cls)], dim=1)
    assert mask[0, 4 + 2] and mask[1, 4 + 6] and mask[3, 4 + 6] and not mask[2, 4:].any()
    ref = torch.stack([-(logits[i, i] - torch.logsumexp(logits[i][~mask[i]], 0)) for i in range(4)]).mean()
    assert torch.allclose(loss, ref, atol=1e-5)


def test_gradcache_with_hard_negatives_equals_full_batch(tiny_encoder_dir):
    from helpers.training import compute_gradients, make_batch

    from skilltrain.model import BiEncoder

    batch = make_batch(n=12, negatives=2)
    grads = []
    for chunk in (0, 5):
        encoder = BiEncoder.from_pretrained(tiny_encoder_dir).eval()
        loss = compute_gradients(encoder, batch, 12, gradcache_chunk=chunk)
        grads.append((loss, {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}))
    (loss_a, a), (loss_b, b) = grads
    assert abs(loss_a - loss_b) < 1e-5
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_weight_averaging_interpolates_and_picks_alpha_by_score():
    start = torch.nn.Linear(3, 2)
    trained = torch.nn.Linear(3, 2)
    s, t = start.state_dict(), {k: v.clone() for k, v in trained.state_dict().items()}
    half = interpolate(s, t, 0.5)
    assert torch.allclose(half["weight"], (s["weight"] + t["weight"]) / 2)
    assert torch.equal(interpolate(s, t, 1.0)["weight"], t["weight"])
    target = interpolate(s, t, 0.25)["weight"]
    alpha, scores = choose_alpha(trained, s, [0.0, 0.25, 0.5], lambda m: -(m.weight - target).abs().sum().item())
    assert alpha == 0.25 and set(scores) == {0.0, 0.25, 0.5, 1.0}
    assert torch.allclose(trained.weight, target)
    # never worse than no averaging: a score that prefers the trained model keeps it
    trained.load_state_dict(t)
    alpha, _ = choose_alpha(trained, s, [0.5], lambda m: -(m.weight - t["weight"]).abs().sum().item())
    assert alpha == 1.0 and torch.equal(trained.weight, t["weight"])


def test_fit_weight_averaging_picks_alpha_on_validation_and_needs_validation(loop_inputs, tiny_encoder_dir, tmp_path):
    from skillgen.common.errors import UserError
    from skilltrain.model import BiEncoder
    from skilltrain.training.fit import _average_with_start, prepare
    from skilltrain.training.cli import _floats

    cfg = loop_config(loop_inputs, tiny_encoder_dir, tmp_path, average_alphas=[0.0, 0.5])
    data, _ = prepare(cfg)
    trained = BiEncoder.from_pretrained(tiny_encoder_dir)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))  # far from the start: some alpha must score differently
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    record = _average_with_start(trained, cfg, data)
    assert set(record["val_rp5_by_alpha"]) == {"0.0", "0.5", "1.0"}
    assert record["val_rp5_by_alpha"][str(record["alpha"])] == max(record["val_rp5_by_alpha"].values())
    start = BiEncoder.from_pretrained(tiny_encoder_dir).state_dict()
    want = interpolate(start, before, record["alpha"])
    assert all(torch.allclose(trained.state_dict()[k], want[k]) for k in want)
    with pytest.raises(UserError, match="average_alphas"):
        prepare(cfg.model_copy(update={"val_sets": []}))
    with pytest.raises(UserError, match="--average-alphas"):
        _floats("0.5,x", "--average-alphas")
    with pytest.raises(ValueError):
        loop_config(loop_inputs, tiny_encoder_dir, tmp_path, average_alphas=[1.5])


def test_group_of_one_runs_the_gather_collective_and_cleans_up():
    from skilltrain.training.distributed import gather_with_grad, group_of_one, world

    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x  # no process group: nothing to gather
    with group_of_one(use_gpu=False) as backend:
        assert backend == "gloo" and world() == (0, 1)
        gathered = gather_with_grad(x)
        assert "GatherWithGrad" in type(gathered.grad_fn).__name__ and torch.equal(gathered, x)
        (gathered * 2).sum().backward()
        assert torch.equal(x.grad, torch.full_like(x, 2.0))
    assert world() == (0, 1) and not torch.distributed.is_initialized()
