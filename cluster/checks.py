"""Everything the pipeline can check before its first side effect.

The pipeline's side effects start with Ray, the simulator, ``pipeline.json`` and the run dir's lease,
and the first paid one is generation's first request. A mistake found after that costs what a provider
billed: a training batch that the generated skills cannot fill used to fail only once every sentence
had been paid for. So :func:`check_pipeline` runs on the parsed config first and refuses, in one line
naming the file and key (or the flag), anything it can know early:

- the run dir is a folder that can be created, new, empty or a pipeline's, and not held by another run;
- generation's own checks (:func:`skillgen.checks.check_run`): the taxonomy and the skill selection, the
  generation run dir and its fingerprint, and for a real endpoint the API key and one cheap request;
- the start encoder is a model directory;
- training's global batch fits the skills generation will produce (each skill at most once per batch);
- the benchmark files the evaluation reads exist.
"""

from __future__ import annotations

from cluster.config import SIMULATOR_PLACEHOLDER_URL, PipelineConfig
from skillgen import RunDirLease
from skillgen.common import Location, UserError, check_output_dir, check_writable_path, folder_entries, resolve

# what a pipeline run dir holds (besides files it writes at the top: pipeline.json, stages.json, report.md, ...)
PIPELINE_DIRS = ("generation", "model", "train", "stale")


def check_pipeline(config: PipelineConfig) -> None:
    """Raise :class:`UserError` for anything above; reads files, writes nothing, starts nothing."""
    from skillgen import FingerprintMismatch, check_run
    from skillgen.common import load_skills
    from skilltrain.evaluation.evaluate import load_benchmarks
    from skilltrain.model import check_encoder_dir, default_model_dir

    run_dir = resolve(config.run_dir, "run_dir")
    if run_dir.is_local:
        check_writable_path(run_dir.local_path, "run dir")
    check_output_dir(run_dir, "run dir", is_own=is_pipeline_dir, own_kind="a pipeline run dir")
    RunDirLease.check_free(config.run_dir)  # a second pipeline on it: refused before Ray, naming the first
    generation = config.generation_config(SIMULATOR_PLACEHOLDER_URL if config.uses_simulator else None)
    try:
        checked = check_run(generation, endpoint=False)
    except FingerprintMismatch as exc:
        raise UserError(exc.describe({k: f"[generation] {k}" for k in exc.differences})) from None
    training = config.train_config()
    check_encoder_dir(training.model if training.model is not None else default_model_dir())
    taxonomy = load_skills(config.esco)
    skills = taxonomy.height if training.taxonomy_pairs else len(checked.skills)
    check_batch_fits(config, training.global_batch_size, skills)
    evaluation = config.evaluation
    load_benchmarks(taxonomy, evaluation.sets, evaluation.split, config.benchmark_dir)
    if config.benchmark_dir is not None and training.val_sets:  # training validates on them (silently off by default)
        load_benchmarks(taxonomy, training.val_sets, "validation", config.benchmark_dir)
    if not config.uses_simulator:  # last: the one check that sends a request (the simulator is not started yet)
        checked.check_endpoint(generation)


def check_batch_fits(config: PipelineConfig, global_batch: int, skills: int) -> None:
    """A global batch holds each skill at most once, so it cannot exceed the skills generation selects."""
    if global_batch <= skills:
        return
    training = config.training
    chosen = ", ".join(f"{key} = {config.generation[key]!r}" for key in ("sample", "limit", "skill_types", "labels")
                       if config.generation.get(key) is not None)
    raise UserError(
        f"{config.source}: [training] global batch {global_batch} (workers {training.get('workers', 1)} x batch_size "
        f"{training.get('batch_size', 64)}) exceeds the {skills} skills [generation] selects"
        + (f" ({chosen})" if chosen else "")
        + ": a batch holds each skill at most once; lower [training] batch_size or select more skills"
    )


def is_pipeline_dir(location: Location) -> bool:
    """A run dir a pipeline wrote (``pipeline.json``), or one it was starting (only its lease and stage folders)."""
    names = [n.rstrip("/") for n in folder_entries(location)]
    return "pipeline.json" in names or all(n in PIPELINE_DIRS or n.startswith(".skillgen.lease") for n in names)
