"""One-GPU training benchmark: throughput up to global batch 4096, the negative-pool study, weight averaging.

``--run`` drives the project's own step code (``setup`` / ``train_step`` of
:mod:`skilltrain.training.train`: augmentation, GradCache, the gathered InfoNCE
loss, AdamW) in ONE process inside a torch.distributed group of one (NCCL on
CUDA, gloo on CPU, the backend ``fit`` picks), so every step runs the gather
collective. It imports neither Ray nor Polars nor pydantic (the GPU machine
has none of them): its inputs are a directory written beforehand by
``--prepare`` on a machine with the project installed.

    # here, project venv: simulator sentences for all ESCO skills + taxonomy pairs, gold, fp16 model
    .venv/bin/python benchmarks/bench_training_gpu.py --prepare runs/gpu-in
    # GPU machine
    python benchmarks/bench_training_gpu.py --run runs/gpu-in --out runs/gpu-out --time-budget-s 360
    # CPU smoke test of every part (tiny settings; tests/test_train_gpu_bench.py)
    python benchmarks/bench_training_gpu.py --run DIR --out OUT --smoke
    # here, afterwards: RP@5 against pool size (DIR/pool_rp5.png)
    .venv/bin/python benchmarks/bench_training_gpu.py --plot OUT/results.json --out DIR

Parts, in this order; each is skipped cleanly when the time budget cannot
cover it, and ``OUT/results.json`` is rewritten after every part (``OUT/log.txt``
has the progress lines):

* checks: backend, dtypes under bf16 autocast (encoder bf16, loss fp32), devices of gather and masks;
* zero_shot: the start model on TECH/HOUSE validation and test (all skills ranked, 95% bootstrap CIs);
* sweep: samples/s and ``torch.cuda.max_memory_allocated`` at global batch 64, 256, 1024, 4096
  (GradCache chunk 256, bf16 autocast, fp32 master weights), timed steps after warm-up;
* pool: one pass over the same N pairs (a seeded subset, N sized to the budget from the sweep's
  rates) at global batch 64, 256, 1024; learning rate 2e-5 * sqrt(batch / 64) (square-root scaling
  from the paper's 2e-5 at 64, warm-up 5%, linear decay); validation/test RP@5, MRR with CIs,
  seconds per pair, peak memory;
* average: the pool study's best run (validation RP@5) averaged with the start model, alpha in
  {0.25, 0.5, 0.75, 1} chosen on validation, reported on test;
* hardneg: the best pool size again with 1 mined hard negative per pair (10 nearest skills by
  the start model), validation and test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SETS = ("tech", "house")
SPLITS = ("validation", "test")
UPLOAD_LIMIT_BYTES = 55_000_000


# ---- settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    sweep_batches: tuple[int, ...] = (64, 256, 1024, 4096)
    warmup_steps: int = 3
    timed_steps: int = 30
    chunk: int = 256
    pool_batches: tuple[int, ...] = (64, 256, 1024)
    pool_pairs: int = 131_072  # upper bound; lowered to what the budget allows
    pool_share: float = 0.55  # of the time left after the sweep
    base_lr: float = 2e-5
    base_batch: int = 64
    alphas: tuple[float, ...] = (0.25, 0.5, 0.75)
    hard_negatives: int = 1
    hard_negative_pool: int = 10
    epoch_batch: int = 1024  # the "epoch" part: one pass over all pairs at this global batch
    max_seq_length: int = 128
    n_boot: int = 1000
    log_every_s: float = 15.0


SMOKE = Settings(
    sweep_batches=(4, 8, 16), warmup_steps=1, timed_steps=2, chunk=4, pool_batches=(4, 8, 16), pool_pairs=48,
    pool_share=0.9, alphas=(0.5,), hard_negative_pool=3, max_seq_length=32, n_boot=20, log_every_s=1.0, epoch_batch=16,
)


@dataclass
class StepConfig:
    """The ``TrainConfig`` fields ``setup``/``train_step`` read (TrainConfig is pydantic, absent on the GPU machine)."""

    model: Path
    batch_size: int
    lr: float
    gradcache_chunk: int
    max_seq_length: int
    max_steps: int = 0
    epochs: int = 1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    scale: float = 20.0
    symmetric: bool = True
    bf16: bool = True
    seed: int = 0
    augment_prob: float = 1.0
    hard_negatives: int = 0

    @property
    def global_batch_size(self) -> int:
        return self.batch_size  # a world of one


# ---- --prepare (project venv: Ray, Polars) ------------------------------------------


def ensure_generated(gen_dir: Path, n_sentences: int) -> None:
    """Simulator sentences for every ESCO skill, as benchmarks/bench_quality.py makes them (resumes if partial)."""
    from skillgen.common.raycluster import init_ray
    from skillgen.config import make_config
    from skillgen import run_generation
    from skillgen.simulator import run_in_thread

    init_ray(None)
    with run_in_thread(latency="lognormal:-1.6,0.4") as sim:
        summary = run_generation(make_config({"base_url": sim.base_url, "model": "simulator", "run_dir": str(gen_dir),
                                              "n_sentences": n_sentences, "workers": 2}), progress=False)
    if summary.status != "complete":
        raise SystemExit(f"{gen_dir}: generation ended '{summary.status}'")


def write_inputs(out: Path, pairs: dict[str, list], skills: dict[str, list], gold: dict, encoder) -> dict:
    """The upload: pairs + skills as zstd Parquet, gold as JSON, the encoder in fp16 safetensors."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "sentence": pa.array(pairs["sentence"], pa.string()), "label": pa.array(pairs["label"], pa.string()),
        "cls": pa.array(pairs["cls"], pa.int32()), "generated": pa.array(pairs["generated"], pa.bool_()),
    })
    pq.write_table(table, out / "pairs.parquet", compression="zstd", compression_level=19)
    pq.write_table(pa.table({"label": skills["label"], "alt_labels": pa.array(skills["alt_labels"], pa.list_(pa.string()))}),
                   out / "skills.parquet", compression="zstd", compression_level=19)
    (out / "gold.json").write_text(json.dumps(gold))
    encoder.transformer.half()  # 2 bytes a weight on the wire; --run loads them back as fp32 master weights
    encoder.save(out / "model")
    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    manifest = {"pairs": len(pairs["sentence"]), "skills": len(skills["label"]), "bytes": sum(sizes.values()), "files": sizes}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def prepare(out: Path, gen_dir: Path, n_sentences: int, max_pairs: int) -> None:
    from skillgen.common.taxonomy import load_skills
    from skilltrain.evaluation.evaluate import load_benchmarks
    from skilltrain.model import BiEncoder
    from skilltrain.training.data import load_pairs

    ensure_generated(gen_dir, n_sentences)
    skills = load_skills(None)
    pairs = load_pairs(gen_dir, skills)
    if max_pairs and pairs.height > max_pairs:
        pairs = pairs.sample(max_pairs, seed=0).sort(["label", "sentence"])
    gold = {
        name: {split: [{"sentence": s.sentence, "gold": list(s.gold_labels)} for s in load_benchmarks(skills, [name], split)[0].sentences]
               for split in SPLITS}
        for name in SETS
    }
    manifest = write_inputs(
        out,
        {"sentence": pairs["sentence"].to_list(), "label": pairs["label"].to_list(), "cls": pairs["cls"].to_list(),
         "generated": (pairs["source"] == "generated").to_list()},
        {"label": skills["label"].to_list(), "alt_labels": skills["alt_labels"].to_list()},
        gold,
        BiEncoder.from_pretrained(None),
    )
    print(json.dumps({k: v for k, v in manifest.items() if k != "files"}), flush=True)
    for name, size in manifest["files"].items():
        print(f"  {size / 1e6:8.2f} MB  {name}", flush=True)
    if manifest["bytes"] >= UPLOAD_LIMIT_BYTES:
        raise SystemExit(f"{out}: {manifest['bytes'] / 1e6:.1f} MB >= {UPLOAD_LIMIT_BYTES / 1e6:.0f} MB upload limit; lower --max-pairs")


# ---- --run: inputs, evaluation ------------------------------------------------------


@dataclass
class Inputs:
    model_dir: Path
    sentences: list[str]
    labels: list[str]
    cls: np.ndarray
    generated: np.ndarray
    class_labels: list[str]
    skill_labels: list[str]
    skill_alts: dict[str, list[str]]
    gold: dict


def load_inputs(indir: Path) -> Inputs:
    import pyarrow.parquet as pq

    pairs = pq.read_table(indir / "pairs.parquet")
    cls = pairs["cls"].to_numpy().astype(np.int64)
    labels = pairs["label"].to_pylist()
    class_labels = [""] * (int(cls.max()) + 1)
    for c, label in zip(cls, labels):
        class_labels[c] = label
    skills = pq.read_table(indir / "skills.parquet")
    skill_labels = skills["label"].to_pylist()
    return Inputs(
        indir / "model", pairs["sentence"].to_pylist(), labels, cls, pairs["generated"].to_numpy(zero_copy_only=False),
        class_labels, skill_labels, dict(zip(skill_labels, skills["alt_labels"].to_pylist())),
        json.loads((indir / "gold.json").read_text()),
    )


def train_data(inputs: Inputs, n_pairs: int = 0, seed: int = 0):
    """TrainData over all pairs, or over a seeded subset of ``n_pairs`` (the same subset for every pool size)."""
    from skilltrain.training.train import TrainData

    idx = np.arange(len(inputs.cls))
    if n_pairs and n_pairs < len(idx):
        idx = np.sort(np.random.default_rng([seed, 7]).permutation(len(idx))[:n_pairs])
    generated = np.flatnonzero(inputs.generated[idx])
    return TrainData(
        sentences=[inputs.sentences[i] for i in idx], labels=[inputs.labels[i] for i in idx], cls=inputs.cls[idx],
        partner_pool=generated if len(generated) else np.arange(len(idx)), class_labels=inputs.class_labels,
    )


class Scorer:
    """RP@K and MRR ranking all skills, through the project's metric code (numpy only)."""

    def __init__(self, inputs: Inputs, n_boot: int):
        row = {label: i for i, label in enumerate(inputs.skill_labels)}
        self.skill_labels = inputs.skill_labels
        self.sets = {
            (name, split): ([r["sentence"] for r in rows], [{row[g] for g in r["gold"]} for r in rows])
            for name, splits in inputs.gold.items() for split, rows in splits.items()
        }
        self.n_boot = n_boot

    def __call__(self, encoder, splits=SPLITS, ci: bool = True) -> dict[str, Any]:
        from skilltrain.evaluation.metrics import score_rankings, with_ci

        skills = encoder.encode(self.skill_labels, batch_size=512)
        out: dict[str, Any] = {}
        for (name, split), (sentences, gold) in self.sets.items():
            if split not in splits:
                continue
            report = score_rankings(encoder.encode(sentences, batch_size=512) @ skills.T, gold)
            out[f"{name}_{split}"] = (with_ci(report, self.n_boot) if ci else report).to_json()
        if "validation" in splits:
            out["val_rp5"] = float(np.mean([out[f"{n}_validation"]["RP@5"] for n in sorted({n for n, _ in self.sets})]))
        return out


# ---- --run: the parts ---------------------------------------------------------------


class Bench:
    """Budget, device, log and results shared by the parts."""

    def __init__(self, inputs: Inputs, out: Path, settings: Settings, device, budget_s: float):
        self.inputs, self.out, self.settings, self.device = inputs, out, settings, device
        self.deadline = time.perf_counter() + budget_s
        self.started = time.perf_counter()
        self.results: dict[str, Any] = {"settings": asdict(settings), "parts": {}, "skipped": {}}
        self.scorer = Scorer(inputs, settings.n_boot)
        self.log_file = (out / "log.txt").open("a")
        self.best_state: dict | None = None  # the pool study's best weights (CPU), for the averaging part

    def log(self, msg: str) -> None:
        line = f"[{time.perf_counter() - self.started:7.1f}s] {msg}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def save(self) -> None:
        self.results["wall_s"] = round(time.perf_counter() - self.started, 1)
        self.results["imported_ray"] = "ray" in sys.modules
        self.results["imported_polars"] = "polars" in sys.modules
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=2, default=str))
        os.replace(tmp, self.out / "results.json")

    def skip(self, part: str, why: str) -> None:
        self.results["skipped"][part] = why
        self.log(f"SKIP {part}: {why}")
        self.save()

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def step_config(self, batch: int, lr: float, **kw) -> StepConfig:
        s = self.settings
        return StepConfig(model=self.inputs.model_dir, batch_size=batch, lr=lr, gradcache_chunk=s.chunk, max_seq_length=s.max_seq_length, **kw)

    def start_encoder(self):
        from skilltrain.model import BiEncoder

        return BiEncoder.from_pretrained(self.inputs.model_dir, self.settings.max_seq_length).to(self.device)


def part_checks(b: Bench) -> dict:
    """What the CPU tests cannot show: the CUDA/NCCL path's devices and dtypes, on this machine."""
    import torch

    from skilltrain.training.augment import NO_PARTNER
    from skilltrain.training.distributed import gather_with_grad, world
    from skilltrain.training.gradcache import forward_backward, tokenize
    from skilltrain.training.loss import contrastive_loss, false_negative_mask
    from skilltrain.training.train import autocast_for

    encoder = b.start_encoder().train()
    autocast = autocast_for(b.device, True)
    rows = np.unique(b.inputs.cls, return_index=True)[1][:16]  # 16 pairs of distinct skills
    texts, labels = [b.inputs.sentences[i] for i in rows], [b.inputs.labels[i] for i in rows]
    cls = torch.as_tensor(b.inputs.cls[rows])
    seen: dict[str, Any] = {}

    def loss_fn(outputs, masks):
        s, l_ = outputs
        seen["loss_input_dtype"], seen["loss_input_device"] = str(s.dtype), str(s.device)
        gathered = gather_with_grad(s)
        seen["gathered_device"], seen["gather_is_collective"] = str(gathered.device), gathered.grad_fn is not None and "GatherWithGrad" in type(gathered.grad_fn).__name__
        seen["mask_device"] = str(false_negative_mask(cls.to(s.device), torch.full_like(cls, NO_PARTNER).to(s.device)).device)
        loss = contrastive_loss(s, l_, cls, torch.full_like(cls, NO_PARTNER))
        seen["loss_dtype"] = str(loss.dtype)
        return loss

    linear = next(m for m in encoder.modules() if isinstance(m, torch.nn.Linear))

    def record(module, args, out) -> None:  # a hook that returned a value would replace the layer's output
        seen.setdefault("linear_dtype_under_autocast", str(out.dtype))

    hook = linear.register_forward_hook(record)
    with autocast():
        seen["embedding_dtype_under_autocast"] = str(encoder.embed(texts[:2]).dtype)
    hook.remove()
    loss = forward_backward(encoder, [tokenize(encoder, texts), tokenize(encoder, labels)], loss_fn, chunk=b.settings.chunk, autocast=autocast)
    grads = {str(p.grad.dtype) for p in encoder.parameters() if p.grad is not None}
    return {
        "backend": b.results["env"]["backend"], "world_size": world()[1], "device": str(b.device),
        "param_dtypes": sorted({str(p.dtype) for p in encoder.parameters()}), "grad_dtypes": sorted(grads),
        "loss": float(loss), "loss_finite": bool(torch.isfinite(loss)), **seen,
    }


def part_zero_shot(b: Bench) -> dict:
    t0 = time.perf_counter()
    scores = b.scorer(b.start_encoder())
    b.results["eval_s"] = round(time.perf_counter() - t0, 1)
    return scores


def sweep_one(b: Bench, batch: int) -> dict:
    from skilltrain.training.loader import loader_for
    from skilltrain.training.throughput import model_shape, train_flops
    from skilltrain.training.train import LoopState, peak_memory_mb, setup, train_step

    s = b.settings
    cfg = b.step_config(batch, s.base_lr, max_steps=s.warmup_steps + s.timed_steps)
    b.reset_peak()
    run = setup(cfg, train_data(b.inputs), b.device)
    state, shape, flops = LoopState(), model_shape(run.encoder.transformer), 0.0
    with loader_for(run) as loader:  # the trainer's input pipeline: prefetched, pre-tokenised, pinned on CUDA
        batches = iter(loader)
        for _ in range(s.warmup_steps):
            train_step(run, state, next(batches))
        b.sync()
        t0 = time.perf_counter()
        for _ in range(s.timed_steps):
            step_batch = next(batches)
            loss = train_step(run, state, step_batch)
            flops += train_flops(shape, step_batch.groups)
        b.sync()
        dt = time.perf_counter() - t0
    return {"global_batch": batch, "gradcache_chunk": s.chunk, "timed_steps": s.timed_steps, "step_s": round(dt / s.timed_steps, 4),
            "samples_per_s": round(batch * s.timed_steps / dt, 1), "model_tflops": round(flops / dt / 1e12, 3),
            "mfu": round(flops / dt / run.peak_flops, 4), "peak": run.peak_source,
            "peak_mem_mb": round(peak_memory_mb(b.device), 1), "loss": round(loss, 4)}


def part_sweep(b: Bench) -> dict:
    out = {}
    for batch in b.settings.sweep_batches:
        if batch > len(b.inputs.class_labels):
            out[str(batch)] = {"skipped": f"more than the {len(b.inputs.class_labels)} skills"}
            continue
        done = [v for v in out.values() if "step_s" in v]
        if done:  # a step costs about its batch's share of the last measured one
            steps = b.settings.warmup_steps + b.settings.timed_steps
            need = done[-1]["step_s"] * batch / done[-1]["global_batch"] * steps + 10
            if need > b.left():
                out[str(batch)] = {"skipped": f"time budget (needs ~{need:.0f} s, {b.left():.0f} s left)"}
                continue
        out[str(batch)] = sweep_one(b, batch)
        b.log(f"sweep batch {batch}: {out[str(batch)]}")
    return out


def pool_pairs(b: Bench) -> int:
    """Pairs for each pool run: the requested cap, lowered so all pool sizes fit the budget share (sweep rates)."""
    s = b.settings
    sweep = b.results["parts"].get("sweep", {})
    rates = [sweep.get(str(g), {}).get("samples_per_s") for g in s.pool_batches]
    n = min(s.pool_pairs, len(b.inputs.cls))
    if all(rates):
        evals = len(s.pool_batches) * b.results.get("eval_s", 10.0)
        affordable = (b.left() * s.pool_share - evals) / sum(1.0 / r for r in rates)
        n = min(n, int(affordable))
    else:  # no measured rates (the sweep failed or was skipped): a quarter of the cap, not a guess at the budget
        n = min(n, s.pool_pairs // 4)
    step = max(s.pool_batches)
    return (n // step) * step


def train_pass(b: Bench, batch: int, data, tag: str, **cfg_kw) -> tuple[dict, Any]:
    """One pass over ``data`` at global ``batch``; returns (metrics with scores, the trained encoder)."""
    from skilltrain.training.loader import loader_for
    from skilltrain.training.train import LoopState, peak_memory_mb, setup, train_step

    s = b.settings
    lr = s.base_lr * math.sqrt(batch / s.base_batch)
    b.reset_peak()
    run = setup(b.step_config(batch, lr, **cfg_kw), data, b.device)
    state, last_log = LoopState(), time.perf_counter()
    b.sync()
    t0 = time.perf_counter()
    with loader_for(run) as loader:
        for step_batch in loader:
            loss = train_step(run, state, step_batch)
            if time.perf_counter() - last_log > s.log_every_s:
                b.log(f"{tag} batch {batch}: step {state.step}/{run.schedule.total} loss {loss:.4f}")
                last_log = time.perf_counter()
    b.sync()
    train_s = time.perf_counter() - t0
    pairs_seen = run.schedule.total * batch
    metrics = {
        "global_batch": batch, "lr": lr, "steps": run.schedule.total, "pairs_seen": pairs_seen, "train_s": round(train_s, 1),
        "us_per_pair": round(1e6 * train_s / max(1, pairs_seen), 1), "peak_mem_mb": round(peak_memory_mb(b.device), 1),
        "final_loss": round(loss, 4),
    }
    metrics["scores"] = b.scorer(run.encoder)
    b.log(f"{tag} batch {batch}: {json.dumps({k: v for k, v in metrics.items() if k != 'scores'})} val RP@5 {metrics['scores']['val_rp5']:.2f}, "
          + ", ".join(f"{n} test RP@5 {metrics['scores'][f'{n}_test']['RP@5']:.1f}" for n in SETS if f"{n}_test" in metrics["scores"]))
    return metrics, run.encoder


def part_pool(b: Bench) -> dict:
    n = pool_pairs(b)
    if n < max(b.settings.pool_batches):
        raise _Skip(f"only {n} pairs would fit the budget")
    data = train_data(b.inputs, n)
    b.log(f"pool study on {n} pairs (same subset for every batch)")
    out: dict[str, Any] = {"pairs": n, "lr_rule": "2e-5 * sqrt(global_batch / 64)", "runs": {}}
    best_val = -1.0
    for batch in b.settings.pool_batches:
        metrics, encoder = train_pass(b, batch, data, "pool")
        out["runs"][str(batch)] = metrics
        if metrics["scores"]["val_rp5"] > best_val:
            best_val = metrics["scores"]["val_rp5"]
            b.best_state = {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}
            out["best_batch"] = batch
        b.save()
    return out


def part_average(b: Bench) -> dict:
    from skilltrain.training.average import choose_alpha

    pool = b.results["parts"]["pool"]
    start = {k: v.detach().cpu().clone() for k, v in b.start_encoder().state_dict().items()}
    encoder = b.start_encoder()
    encoder.load_state_dict(b.best_state)
    alpha, by_alpha = choose_alpha(encoder, start, b.settings.alphas, lambda m: b.scorer(m, ("validation",), ci=False)["val_rp5"])
    return {"of_batch": pool["best_batch"], "alpha": alpha, "val_rp5_by_alpha": by_alpha, "scores": b.scorer(encoder)}


def part_hardneg(b: Bench) -> dict:
    from skilltrain.training.hardneg import mine_for_labels

    s, pool = b.settings, b.results["parts"]["pool"]
    data = train_data(b.inputs, pool["pairs"])
    t0 = time.perf_counter()
    data.hard_negatives = mine_for_labels(b.start_encoder(), b.inputs.class_labels, b.inputs.skill_alts, s.hard_negative_pool)
    mine_s = time.perf_counter() - t0
    metrics, _ = train_pass(b, pool["best_batch"], data, "hardneg", hard_negatives=s.hard_negatives)
    return {"hard_negatives": s.hard_negatives, "pool": s.hard_negative_pool, "mine_s": round(mine_s, 1), **metrics}


def part_epoch(b: Bench) -> dict:
    """One full pass over every pair at ``epoch_batch``, then the weight average with the start model (alpha on validation)."""
    from skilltrain.training.average import choose_alpha

    data = train_data(b.inputs, b.settings.pool_pairs if b.settings is SMOKE else 0)
    metrics, encoder = train_pass(b, b.settings.epoch_batch, data, "epoch")
    start = {k: v.detach().cpu().clone() for k, v in b.start_encoder().state_dict().items()}
    alpha, by_alpha = choose_alpha(encoder, start, b.settings.alphas, lambda m: b.scorer(m, ("validation",), ci=False)["val_rp5"])
    averaged = b.scorer(encoder) if alpha != 1.0 else metrics["scores"]
    b.log(f"epoch average: alpha {alpha} ({by_alpha}); " + ", ".join(f"{n} test RP@5 {averaged[f'{n}_test']['RP@5']:.1f}" for n in SETS))
    return {**metrics, "pairs": len(data.cls), "average": {"alpha": alpha, "val_rp5_by_alpha": by_alpha, "scores": averaged}}


class _Skip(Exception):
    pass


def _estimate(b: Bench, part: str) -> float:
    """Rough seconds a part needs, from what has been measured so far (0 = unknown: just try)."""
    eval_s = b.results.get("eval_s", 0.0)
    if part == "average":
        return eval_s * (len(b.settings.alphas) + 2)
    if part == "hardneg":
        run = b.results["parts"]["pool"]["runs"][str(b.results["parts"]["pool"]["best_batch"])]
        return run["train_s"] * 1.3 + 2 * eval_s
    return 0.0


def run_parts(b: Bench) -> None:
    parts = [("checks", part_checks), ("zero_shot", part_zero_shot), ("sweep", part_sweep), ("pool", part_pool),
             ("average", part_average), ("hardneg", part_hardneg), ("epoch", part_epoch)]
    needs = {"average": "pool", "hardneg": "pool"}
    for name, fn in parts:
        if (b.only and name not in b.only) or (not b.only and name == "epoch"):
            continue
        if needs.get(name) and needs[name] not in b.results["parts"]:
            b.skip(name, f"needs {needs[name]}")
            continue
        if b.left() <= 0 or b.left() < _estimate(b, name):
            b.skip(name, f"time budget ({b.left():.0f} s left, needs ~{_estimate(b, name):.0f} s)")
            continue
        b.log(f"== {name} ({b.left():.0f} s left)")
        t0 = time.perf_counter()
        try:
            b.results["parts"][name] = fn(b)
        except _Skip as why:
            b.skip(name, str(why))
            continue
        except Exception:  # one run on a borrowed GPU: record the failure, let the independent parts still run
            b.results.setdefault("errors", {})[name] = traceback.format_exc()
            b.log(f"ERROR in {name}:\n{traceback.format_exc()}")
            b.save()
            continue
        b.results.setdefault("part_s", {})[name] = round(time.perf_counter() - t0, 1)
        b.save()


def run(indir: Path, out: Path, budget_s: float, smoke: bool, only: tuple[str, ...] = ()) -> dict:
    import torch

    from skilltrain.training.distributed import group_of_one

    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda:0" if torch.cuda.is_available() and not smoke else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    settings = SMOKE if smoke else Settings()
    bench = Bench(load_inputs(indir), out, settings, device, budget_s)
    bench.only = only
    with group_of_one(device.type == "cuda") as backend:
        bench.results["env"] = {
            "torch": torch.__version__, "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "backend": backend, "pairs": len(bench.inputs.cls), "skills_ranked": len(bench.inputs.skill_labels),
            "smoke": smoke, "budget_s": budget_s,
        }
        bench.log(f"env {bench.results['env']}")
        try:
            run_parts(bench)
        finally:
            bench.save()
    bench.log(f"done in {bench.results['wall_s']} s; results in {out / 'results.json'}")
    return bench.results


def plot_pool(results_json: Path, out_dir: Path | None = None) -> Path:
    """RP@5 (test, 95% CI) against the negative pool size, per set: ``pool_rp5.png`` in ``out_dir`` (default: next to the results)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(results_json.read_text())
    runs = results["parts"]["pool"]["runs"]
    batches = sorted(int(b) for b in runs)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in SETS:
        scores = [runs[str(b)]["scores"][f"{name}_test"] for b in batches]
        mid = np.array([s["RP@5"] for s in scores])
        lo, hi = (np.array([s["ci95"]["RP@5"][i] for s in scores]) for i in (0, 1))
        ax.errorbar(batches, mid, yerr=[mid - lo, hi - mid], marker="o", capsize=3, label=f"{name.upper()} test")
        zero = results["parts"].get("zero_shot", {}).get(f"{name}_test")
        if zero:
            ax.axhline(zero["RP@5"], linestyle=":", color=ax.lines[-1].get_color(), label=f"{name.upper()} zero-shot")
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel(f"global batch = negative pool (same {results['parts']['pool']['pairs']:,} pairs)")
    ax.set_ylabel("RP@5 (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = (out_dir or results_json.parent) / "pool_rp5.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prepare", type=Path, metavar="OUTDIR", help="write the GPU machine's inputs here (project venv)")
    mode.add_argument("--run", type=Path, metavar="INDIR", help="run the benchmark on inputs written by --prepare")
    mode.add_argument("--plot", type=Path, metavar="RESULTS_JSON", help="draw RP@5 against pool size from a --run's results.json (matplotlib)")
    p.add_argument("--out", type=Path, help="--run: results dir (results.json, log.txt); --plot: where pool_rp5.png goes")
    p.add_argument("--time-budget-s", type=float, default=360.0, help="--run: parts that do not fit are skipped")
    p.add_argument("--smoke", action="store_true", help="--run: tiny settings on CPU (a test of every part)")
    p.add_argument("--parts", default="", help="--run: comma-separated parts to run (default: all but epoch): checks, zero_shot, sweep, pool, average, hardneg, epoch")
    p.add_argument("--gen-dir", type=Path, default=Path("runs/bench-esco-full"), help="--prepare: generation run dir (made with the simulator if incomplete)")
    p.add_argument("--sentences", type=int, default=10, help="--prepare: sentences per skill")
    p.add_argument("--max-pairs", type=int, default=0, help="--prepare: keep a seeded subset of this many pairs (0 = all)")
    args = p.parse_args()
    if args.prepare:
        prepare(args.prepare, args.gen_dir, args.sentences, args.max_pairs)
        return 0
    if args.plot:
        print(plot_pool(args.plot, args.out))
        return 0
    if args.out is None:
        p.error("--run needs --out")
    run(args.run, args.out, args.time_budget_s, args.smoke, tuple(x for x in args.parts.split(",") if x))
    return 0


if __name__ == "__main__":
    sys.exit(main())
