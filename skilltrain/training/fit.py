"""The training driver: check inputs, run Ray Train, export the best model.

``fit(config)`` is the public entry point (the CLI and the pipeline call it):

1. validate everything a user can get wrong (run dir, shards' schema, encoder
   dir, batch vs number of skills, taxonomy/benchmark files) and fail with one
   line *before* any worker starts;
2. ship the pairs (and the validation data) to the workers once through the
   Ray object store, so it works on a multi-node cluster;
3. run :func:`skilltrain.training.train.train_loop_per_worker` under ``TorchTrainer``
   (gloo on CPU, NCCL on GPU: :func:`~skilltrain.training.distributed.backend_for`) with checkpoints through ``ray.train.report``
   and ``FailureConfig(max_failures)``: a failed worker group restarts from
   the latest checkpoint, and a rerun with the same ``name`` resumes;
4. load the checkpoint with the best validation RP@5 (the latest one when
   validation is off), score it on the test split when the benchmarks are
   available, and save it in the sentence-transformers layout with the
   training config and the evaluation results. With ``average_alphas`` the
   exported weights are first averaged with the start model's, alpha chosen
   on validation (:mod:`skilltrain.training.average`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import polars as pl

from skillgen.common import UserError
from skillgen.common import init_ray
from skillgen.common import (Location, Output, check_output_dir, check_writable_path, folder_entries, is_uri, resolve,
                             staged_locally)
from skilltrain.config import CHECKPOINTS_DIR, TrainConfig
from skilltrain.training.data import describe_pairs, load_pairs
from skilltrain.training.relevance import RelevanceFilter
from skilltrain.model import TRAINING_CONFIG_FILE, BiEncoder, check_encoder_dir, default_model_dir
from skilltrain.training.distributed import backend_for
from skilltrain.training.sampler import plan_schedule
from skilltrain.training.train import LABEL_EMBEDDINGS_FILE, META_FILE, TrainData, load_model_weights, train_loop_per_worker, validate

if TYPE_CHECKING:
    from skilltrain.ranking import SkillIndex

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    out_dir: Path
    best_step: int
    best_metrics: dict[str, Any]  # the best checkpoint's reported metrics (val_rp5, loss, ...)
    history: list[dict[str, Any]]  # one entry per logged step: {"step", "loss", "val_rp5" at validations}
    wall_s: float
    test_results: dict[str, Any] | None = None  # final evaluation on the test split (eval_results.json)
    checkpoint: str = ""
    losses: list[float | None] = field(default_factory=list)  # every step's loss: losses[s - 1] for step s
    extra: dict[str, Any] = field(default_factory=dict)


def _load_taxonomy(cfg: TrainConfig, required: bool) -> pl.DataFrame | None:
    from skillgen.common import load_skills

    if not required and not cfg.val_sets:
        return None
    if cfg.esco is not None or required:
        return load_skills(cfg.esco)  # explicit (or needed) file: any problem is the user's to fix
    try:
        return load_skills(None)
    except UserError as exc:
        log.info("validation off: no ESCO taxonomy (%s)", str(exc).split(":")[0])
        return None


def _load_validation(cfg: TrainConfig, skills: pl.DataFrame | None) -> list:
    from skilltrain.evaluation.evaluate import load_benchmarks

    if skills is None or not cfg.val_sets:
        return []
    try:
        return load_benchmarks(skills, cfg.val_sets, "validation", cfg.benchmark_dir)
    except UserError as exc:
        if cfg.benchmark_dir is not None:
            raise
        log.info("validation off: %s", exc)
        return []


def check_outputs(cfg: TrainConfig, overwrite: bool = False) -> Output:
    """``--out`` (and ``--storage``) before anything is read or written: a new or empty folder, a model dir
    ``fit`` wrote (or is writing: only its checkpoints so far), or anything with ``overwrite``; never the
    run dir it reads."""
    output = check_output_dir(cfg.out, "--out", overwrite=overwrite, is_own=is_model_dir,
                              own_kind="a skilltrain model directory", inputs=[("--data", cfg.data)])
    if cfg.storage_path is not None and not is_uri(str(cfg.storage_path)):
        check_writable_path(Path(cfg.storage_path).expanduser(), "--storage")
    return output


def is_model_dir(location: Location) -> bool:
    """A model dir ``fit`` wrote (it has the training config), or one it was writing when stopped (checkpoints only)."""
    names = folder_entries(location)
    return TRAINING_CONFIG_FILE in names or names == [f"{CHECKPOINTS_DIR}/"]


def kept_on_export(cfg: TrainConfig) -> tuple[str, ...]:
    """The folder of ``--out`` that holds Ray Train's checkpoints, if it is inside it: replacing a model keeps them."""
    out, storage = resolve(cfg.out), resolve(cfg.storage)
    inside = storage.path.startswith(out.path.rstrip("/") + "/") and storage.scheme == out.scheme
    return (storage.path[len(out.path.rstrip("/")) + 1:].split("/")[0],) if inside else ()


def prepare(cfg: TrainConfig) -> tuple[TrainData, dict[str, Any]]:
    """All input checks and the data the workers need; raises UserError before any training."""
    model_dir = check_encoder_dir(cfg.model if cfg.model is not None else default_model_dir())
    skills = _load_taxonomy(cfg, required=cfg.taxonomy_pairs or cfg.min_relevance_rank is not None)
    relevance = RelevanceFilter(cfg.min_relevance_rank, model_dir, skills) if cfg.min_relevance_rank else None
    pairs = load_pairs(cfg.data, skills if cfg.taxonomy_pairs else None, keep=relevance)
    n_skills = pairs["cls"].n_unique()
    if cfg.global_batch_size > n_skills:
        raise UserError(
            f"global batch {cfg.global_batch_size} (workers {cfg.workers} x batch {cfg.batch_size}) exceeds the "
            f"{n_skills} distinct skills in {cfg.data}: a batch holds each skill at most once; lower --batch-size "
            "(batch_size in a pipeline's [training])"
        )
    benchmarks = _load_validation(cfg, skills)
    if cfg.average_alphas and not benchmarks:
        raise UserError("average_alphas: weight averaging picks alpha on validation, but no validation benchmarks were found")
    cls = pairs["cls"].to_numpy()
    generated = np.flatnonzero((pairs["source"] == "generated").to_numpy())
    data = TrainData(
        sentences=pairs["sentence"].to_list(),
        labels=pairs["label"].to_list(),
        cls=cls,
        partner_pool=generated if len(generated) else np.arange(pairs.height),
        val_skills=skills if benchmarks else None,
        val_benchmarks=benchmarks,
    )
    schedule = plan_schedule(cls, cfg.global_batch_size, cfg.seed, cfg.epochs, cfg.max_steps)
    if len(schedule.plans[0]) == 0:
        raise UserError(f"{cfg.data}: {pairs.height} pairs do not fill one global batch of {cfg.global_batch_size}")
    if cfg.hard_negatives and not cfg.hard_negatives <= cfg.hard_negative_pool < n_skills:
        raise UserError(
            f"--hard-negatives {cfg.hard_negatives} / --hard-negative-pool {cfg.hard_negative_pool}: need hard negatives "
            f"<= pool < the {n_skills} skills in {cfg.data} (hard_negatives / hard_negative_pool in a pipeline's [training])"
        )
    log.info("training pairs: %s", describe_pairs(pairs))
    if cfg.hard_negatives:
        _add_hard_negatives(data, pairs, skills, cfg, model_dir)
    info = {
        "model_dir": str(model_dir),
        "pairs": pairs.height,
        "generated": len(generated),  # of the pairs: generated sentences (the rest are taxonomy pairs)
        "skills": n_skills,
        "steps_per_epoch": len(schedule.plans[0]),
        "total_steps": schedule.total,
        "validation": [b.name for b in benchmarks],
        "relevance_filter": relevance.result.to_dict() if relevance and relevance.result else None,
    }
    return data, info


def _add_hard_negatives(data: TrainData, pairs: pl.DataFrame, skills: pl.DataFrame | None, cfg: TrainConfig, model_dir: Path) -> None:
    """Mine each class's nearest other classes with the start model (on the driver, once)."""
    from skilltrain.training.hardneg import mine_for_labels

    classes = pairs.select("cls", "label").unique("cls").sort("cls")
    n_classes = classes.height
    alts = dict(zip(skills["label"].to_list(), skills["alt_labels"].to_list())) if skills is not None else {}
    data.class_labels = classes["label"].to_list()
    started = time.perf_counter()
    encoder = BiEncoder.from_pretrained(model_dir, cfg.max_seq_length)
    data.hard_negatives = mine_for_labels(encoder, data.class_labels, alts, cfg.hard_negative_pool)
    log.info("mined %d hard negatives for each of %d skills in %.1f s", cfg.hard_negative_pool, n_classes, time.perf_counter() - started)


def fit(config: TrainConfig, train_loop: Callable[[dict], None] = train_loop_per_worker, overwrite: bool = False) -> FitResult:
    """Train with Ray Train, export the best checkpoint to ``config.out``; see the module docstring.

    ``train_loop`` is the per-worker function (default: the trainer's own); a wrapper
    around it can add profiling, or inject a failure in a test. ``config.out`` must be new, empty or a
    model dir ``fit`` wrote (it is replaced); ``overwrite`` replaces anything else in it.
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    started = time.perf_counter()
    phases: dict[str, float] = {}  # where the fit's wall time goes (FitResult.extra["phase_s"])
    cfg = config
    output = check_outputs(cfg, overwrite)
    data, info = prepare(cfg)
    if output.holds == "foreign":
        output.clear()  # --overwrite: the folder's old contents go before the first checkpoint lands in it
    phases["prepare"] = time.perf_counter() - started
    log.info(
        "training on %d pairs / %d skills: %d steps (%d/epoch x %d epochs), global batch %d = %d workers x %d",
        info["pairs"], info["skills"], info["total_steps"], info["steps_per_epoch"], cfg.epochs,
        cfg.global_batch_size, cfg.workers, cfg.batch_size,
    )
    log.info("start model %s; Ray Train run '%s' in %s", info["model_dir"], cfg.run_name, cfg.storage)
    resolved = cfg.model_copy(update={"model": Path(info["model_dir"])})
    # given address, $RAY_ADDRESS, else a fresh local Ray. With the dashboard: Ray Train v2's placement-group
    # cleaner asks the State API (served by it) whether the controller lives, and without an answer it
    # has removed a healthy run's workers.
    mark = time.perf_counter()
    init_ray(cfg.ray_address)
    phases["ray_init"] = time.perf_counter() - mark
    validating = bool(data.val_benchmarks)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"config": resolved.to_json(), "data": ray.put(data)},
        torch_config=TorchConfig(backend=backend_for(cfg.use_gpu)),
        scaling_config=ScalingConfig(
            num_workers=cfg.workers, use_gpu=cfg.use_gpu, resources_per_worker=_worker_resources(cfg, cpus_per_worker(cfg)),
        ),
        run_config=RunConfig(
            name=cfg.run_name,
            **ray_storage(cfg.storage),
            checkpoint_config=CheckpointConfig(
                num_to_keep=cfg.checkpoint_keep,
                checkpoint_score_attribute="val_rp5" if validating else None,
                checkpoint_score_order="max",
            ),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            # Ray Train's own INFO lines (checkpoint paths, worker-group set-up, a resumed run's ~350-character
            # snapshot notice) stay in its log files; warnings and errors still reach the console, and the loop
            # prints its own progress. Its per-report result lines need more: train.quiet_ray_reports.
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )
    mark = time.perf_counter()
    result = trainer.fit()
    phases["trainer"] = time.perf_counter() - mark
    mark = time.perf_counter()
    if result.checkpoint is None:
        raise RuntimeError(f"training run '{cfg.run_name}' finished without a checkpoint")

    candidates = result.best_checkpoints or [(result.checkpoint, result.metrics or {})]
    if validating:
        best_ckpt, best_metrics = max(candidates, key=lambda cm: (cm[1].get("val_rp5", float("-inf")), cm[1].get("step", 0)))
    else:
        best_ckpt, best_metrics = max(candidates, key=lambda cm: cm[1].get("step", 0))
    with result.checkpoint.as_directory() as latest_dir:
        latest_meta = json.loads((Path(latest_dir) / META_FILE).read_text())
    history, losses = latest_meta["history"], latest_meta.get("losses", [])

    encoder = BiEncoder.from_pretrained(resolved.model, cfg.max_seq_length, cfg.saved_scoring_config())
    with best_ckpt.as_directory() as best_dir:
        meta = load_model_weights(Path(best_dir), encoder)
        saved_labels = Path(best_dir) / LABEL_EMBEDDINGS_FILE
        label_embeddings = np.load(saved_labels) if saved_labels.exists() else None
    best_step = int(meta["step"])
    eval_results = {"best_step": best_step, "validation": {k: v for k, v in best_metrics.items() if k.startswith("val_")}}
    if cfg.average_alphas:
        eval_results["weight_average"] = _average_with_start(encoder, resolved, data)
        label_embeddings = None  # other weights now
    index = _saved_index(data, label_embeddings)
    if encoder.scoring.token_level and data.val_benchmarks:
        index = index if index is not None else _build_index(encoder, data)
        eval_results.update(_choose_ranking(encoder, cfg, data, index))
    test_results = _final_eval(encoder, cfg, data, index)
    if test_results is not None:
        eval_results["test"] = test_results
    phases["final_eval"] = time.perf_counter() - mark
    mark = time.perf_counter()
    training_config = {**cfg.to_json(), "resolved_model": info["model_dir"], "data_info": info, "best_step": best_step, "history": history}
    output.clear(keep=kept_on_export(cfg))  # an earlier model's files go; this run's checkpoints stay
    save_model(encoder, cfg.out, training_config=training_config, eval_results=eval_results)
    phases["export"] = time.perf_counter() - mark
    wall = time.perf_counter() - started
    log.info("fit time by phase: %s", ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    log.info("saved best checkpoint (step %d%s) to %s in %.1f s", best_step,
             f", val RP@5 {best_metrics['val_rp5']:.2f}" if "val_rp5" in best_metrics else "", cfg.out, wall)
    return FitResult(
        cfg.out, best_step, dict(best_metrics), history, wall, test_results, best_ckpt.path, losses,
        extra={"resumed_at_steps": latest_meta.get("resumes", []), "last_metrics": dict(result.metrics or {}),
               "phase_s": {k: round(v, 1) for k, v in phases.items()}, **info},
    )


def _average_with_start(encoder: BiEncoder, cfg: TrainConfig, data: TrainData) -> dict[str, Any]:
    """Average ``encoder`` (trained) with the start model in place, alpha by validation RP@5."""
    from skilltrain.training.average import choose_alpha

    start = BiEncoder.from_pretrained(cfg.model, cfg.max_seq_length).state_dict()
    alpha, scores = choose_alpha(encoder, start, cfg.average_alphas, lambda model: validate(model, data)["val_rp5"])
    log.info("weight averaging with the start model: alpha %.2f (validation RP@5 by alpha: %s)", alpha,
             ", ".join(f"{a:.2f}: {v:.2f}" for a, v in scores.items()))
    return {"alpha": alpha, "val_rp5_by_alpha": {str(a): v for a, v in scores.items()}}


def _saved_index(data: TrainData, label_embeddings: np.ndarray | None) -> "SkillIndex | None":
    """The skill index the workers computed when validating the chosen checkpoint, if it fits the taxonomy."""
    from skilltrain.ranking import SkillIndex

    if label_embeddings is None or data.val_skills is None or len(label_embeddings) != data.val_skills.height:
        return None
    return SkillIndex(data.val_skills, label_embeddings)


def _build_index(encoder: BiEncoder, data: TrainData) -> "SkillIndex":
    from skilltrain.ranking import SkillIndex

    return SkillIndex.build(encoder, data.val_skills)


def _choose_ranking(encoder: BiEncoder, cfg: TrainConfig, data: TrainData, index: "SkillIndex") -> dict[str, Any]:
    """Token attention, on validation (sentences encoded once): the attention temperature (when a list is configured),
    then two-stage ranking's candidate count C, then the coverage-aware top-k's default; all saved with the model."""
    from dataclasses import replace as replace_field

    from skilltrain.evaluation.candidates import choose_candidates
    from skilltrain.evaluation.diversity import choose_diversity
    from skilltrain.evaluation.evaluate import encode_benchmarks
    from skilltrain.evaluation.temperature import choose_temperature

    chosen: dict[str, Any] = {}
    encoded = encode_benchmarks(encoder, index, data.val_benchmarks)
    if cfg.attention_temperatures:
        best, scores = choose_temperature(encoder, data.val_skills, data.val_benchmarks, cfg.attention_temperatures, index, encoded)
        log.info("attention temperature %.2f (validation RP@5 by temperature: %s)", best,
                 ", ".join(f"{t:g}: {v:.2f}" for t, v in scores.items()))
        chosen["attention_temperature"] = {"temperature": best, "val_rp5_by_temperature": {str(t): v for t, v in scores.items()}}
        encoded = [replace_field(e, queries=e.queries.with_temperature(best)) for e in encoded]
    candidates, curve = choose_candidates(encoder, data.val_skills, data.val_benchmarks, index, encoded=encoded)
    log.info("two-stage ranking: %s candidates (validation RP@5/RP@10 by C: %s)", candidates or "all (exhaustive)",
             "; ".join(f"{p.candidates or 'all'}: " + ", ".join(f"{n} {v['RP@5']:.2f}/{v['RP@10']:.2f}" for n, v in p.scores.items())
                       for p in curve))
    chosen["candidates"] = {"candidates": candidates, "validation_curve": [p.to_json() for p in curve]}
    on, strength, table = choose_diversity(encoder, data.val_skills, data.val_benchmarks, index, encoded=encoded)
    log.info("coverage-aware top-k: strength %g, %s by default", strength, "on" if on else "off")
    chosen["diversity"] = {"diverse": on, "strength": strength, "validation": {str(k): v for k, v in table.items()}}
    return chosen


def cpus_per_worker(cfg: TrainConfig) -> int:
    """``cfg.cpus_per_worker``, or the cluster's free CPUs shared among the workers (at most one node's).

    Ray Train's default is one CPU per worker, and Ray then runs a worker with
    ``OMP_NUM_THREADS=1``: one worker on a 2-core box trained on one core. The worker
    sets its torch threads to what it is given (:func:`skilltrain.training.train.worker_threads`).
    """
    import ray

    if cfg.cpus_per_worker:
        return cfg.cpus_per_worker
    free = ray.available_resources().get("CPU", 1.0)
    custom = cfg.worker_resources or {}
    eligible = [n["Resources"] for n in ray.nodes() if n.get("Alive") and all(n["Resources"].get(k, 0) >= v for k, v in custom.items())]
    return _largest_share([int(r.get("CPU", 0)) for r in eligible], cfg.workers, int(free // cfg.workers))


def _largest_share(node_cpus: list[int], workers: int, at_most: int) -> int:
    """The most CPUs per worker (<= ``at_most``) for which all ``workers`` still fit on ``node_cpus``.

    A worker cannot span nodes, so a share that fits the cluster's total but not the nodes
    (two workers of 2 CPUs on one 3-CPU node) would leave Ray Train waiting forever.
    """
    fits = [c for c in range(1, max(1, at_most) + 1) if sum(n // c for n in node_cpus) >= workers]
    return max(fits, default=1)


def _worker_resources(cfg: TrainConfig, cpus: int) -> dict[str, float]:
    """Per worker: ``cpus`` CPUs (its torch threads and input pipeline), its GPU, and any custom resources."""
    return {"CPU": cpus, **({"GPU": 1} if cfg.use_gpu else {}), **(cfg.worker_resources or {})}


def ray_storage(storage: Path | Location) -> dict[str, Any]:
    """RunConfig arguments: a local path, or the object-store path with its pyarrow filesystem (keys from the env)."""
    if isinstance(storage, Location):
        return {"storage_path": storage.path, "storage_filesystem": storage.fs}
    return {"storage_path": str(storage)}


def save_model(encoder: BiEncoder, out: Path | str, **extra: Any) -> None:
    """Save with its model card to a local dir, or export to a temp dir and upload it when ``out`` is a URI (s3://...)."""
    from skilltrain.card import write_card

    with staged_locally(out) as folder:
        encoder.save(folder, **extra)
        write_card(folder, name=resolve(out).name)


def _final_eval(encoder: BiEncoder, cfg: TrainConfig, data: TrainData, index: "SkillIndex | None" = None) -> dict | None:
    """Test-split scores of the exported model, or None without benchmarks.

    ``index``: the skill embeddings of these weights that the workers computed when validating
    this checkpoint (:func:`_saved_index`); given, the labels are not encoded again.
    """
    from skilltrain.evaluation.evaluate import evaluate, format_table, load_benchmarks, results_json

    if data.val_skills is None:
        return None
    try:
        benchmarks = load_benchmarks(data.val_skills, cfg.val_sets, "test", cfg.benchmark_dir)
    except UserError as exc:
        log.info("final test evaluation skipped: %s", exc)
        return None
    reports = evaluate(encoder, data.val_skills, benchmarks, index=index, ci=True)
    log.info("\n%s", format_table(reports, title=f"best checkpoint on test ({data.val_skills.height} skills ranked)"))
    return results_json(reports)
