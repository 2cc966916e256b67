"""The main job: generate -> train -> evaluate -> report, from one config file.

Runs the same way on a laptop (a new local Ray) and as the entrypoint of
``ray job submit`` (Ray sets ``RAY_ADDRESS``, and the pipeline joins that
cluster); ``--address`` names any other cluster. Every stage resumes from what is already on disk, so
rerunning the command after a crash or a kill never pays for tokens twice:

* generation skips finished request keys (``skillgen`` resume);
* training restarts from its latest Ray Train checkpoint (same run name);
* the exported model, the baseline scores and the evaluation are reused when
  present *and* made from the same inputs: each stage records the fingerprint
  of what it consumes (its config section and the upstream output) in
  ``stages.json`` before it starts; a rerun whose inputs changed moves the
  stale outputs to ``<run_dir>/stale/`` and redoes the stage. Generation is
  the paid stage: a changed model/prompt is refused in one line (by
  ``skillgen``'s run dir fingerprint), more skills only add to it.

    python -m cluster.pipeline                       # local default: simulator, 300 skills, 2 CPU workers
    python -m cluster.pipeline --config cluster/configs/openai.toml
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

from cluster.checks import check_pipeline
from cluster.config import PipelineConfig, load_pipeline_config
from cluster.summary import PipelineSummary
from skillgen.common import BENCHMARK_DIR_HELP, ESCO_HELP, Location, UserError, init_ray, new_parser, resolve

log = logging.getLogger("cluster.pipeline")

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "local.toml"
FIT_DONE = "fit_result.json"
GENERATION_LOG = "generation_runs.jsonl"
STAGES = "stages.json"


def fingerprint(inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def generation_output(config: PipelineConfig) -> list[str]:
    """What training consumes: the generation shards (write-once files, so their names identify them)."""
    from skillgen.common import shard_files

    return [p.name for p in shard_files(config.generation_dir)]


def file_identity(path: Path | None) -> Any:
    if path is None or not Path(path).exists():
        return str(path)
    st = Path(path).stat()
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def enter_stage(config: PipelineConfig, stage: str, inputs: Any, outputs: Sequence[Any]) -> None:
    """Record ``stage``'s input fingerprint; if it ran before on other inputs, move its outputs aside
    (never delete: a person may want them) so nothing stale is reused or resumed."""
    run_dir = resolve(config.run_dir)
    path = run_dir / STAGES
    record = json.loads(path.read_text()) if path.exists() else {}
    fp = fingerprint(inputs)
    if record.get(stage) not in (None, fp):
        stale = run_dir / "stale" / f"{stage}-{time.strftime('%Y%m%dT%H%M%S')}"
        for output in (resolve(o) for o in outputs):
            if output.exists() or output.list(recursive=True):
                output.move_to(stale / output.name)
        log.warning("%s: inputs changed since the last run; redoing it (old outputs moved to %s)", stage, stale)
    record[stage] = fp
    path.write_text(json.dumps(record, indent=2, sort_keys=True))


def simulator_host(config: PipelineConfig) -> str:
    """Where the built-in simulator binds: see ``SimulatorSection.host``."""
    from skillgen.common import resolve_address

    if config.simulator.host != "auto":
        return config.simulator.host
    import ray

    if not ray.is_initialized() or resolve_address(config.ray_address) == "local":
        return "127.0.0.1"
    return ray.util.get_node_ip_address()  # the driver's node, reachable from the cluster's other nodes


def start_simulator(config: PipelineConfig, stack: ExitStack) -> str:
    """Start the built-in simulator in this process; it stops when the pipeline does."""
    from skillgen import SimulatorConfig, run_in_thread

    sim = config.simulator
    handle = run_in_thread(
        SimulatorConfig(host=simulator_host(config), port=0, rpm=sim.rpm or 0, tpm=sim.tpm or 0,
                        latency=sim.latency, fault_rates=sim.fault_rate, seed=sim.seed)
    )
    stack.callback(handle.stop)
    log.info("simulator listening on %s", handle.base_url)
    return handle.base_url


def generate(config: PipelineConfig, base_url: str | None) -> dict[str, Any]:
    """Run (or resume) generation; each invocation's summary is appended to ``generation_runs.jsonl``."""
    from skillgen import RunState, estimate, run_generation

    gen_config = config.generation_config(base_url)
    cost = estimate(gen_config)
    print(cost.format(), flush=True)
    summary = run_generation(gen_config, progress=True)  # logs its own summary line
    record = {"estimate": cost.to_dict(), "summary": summary.to_dict()}
    append_line(resolve(config.run_dir) / GENERATION_LOG, json.dumps(record))
    if summary.state != RunState.COMPLETE:
        raise UserError(
            f"generation did not finish ({summary.status}); "
            "fix the cause (e.g. raise spend_cap_usd) and rerun the same command to continue"
        )
    return record


def append_line(path, line: str) -> None:
    """Append by rewriting the whole (small) object: object stores have no append; one writer per run dir."""
    before = path.read_text() if path.exists() else ""
    path.write_text(before + line + "\n")


def print_estimate(config: PipelineConfig) -> None:
    """Cost before spending: exact prompt tokens, expected completion tokens, online and batch prices."""
    from skillgen import estimate

    with ExitStack() as stack:
        base_url = start_simulator(config, stack) if config.uses_simulator else None
        print(estimate(config.generation_config(base_url)).format(), flush=True)


def train(config: PipelineConfig) -> dict[str, Any]:
    tc = config.train_config()
    inputs = {"training": tc.model_dump(mode="json", exclude={"ray_address"}), "data": generation_output(config)}
    enter_stage(config, "training", inputs, [config.model_dir, tc.storage / tc.run_name])
    done = resolve(config.model_dir) / FIT_DONE
    if done.exists():
        log.info("model already trained: %s", config.model_dir)
        return json.loads(done.read_text())
    from skilltrain.training.fit import fit

    result = fit(config.train_config())
    record = {
        "out_dir": str(result.out_dir), "best_step": result.best_step, "best_metrics": result.best_metrics,
        "history": result.history, "losses": result.losses, "wall_s": round(result.wall_s, 1), "checkpoint": result.checkpoint,
        "resumed_at_steps": result.extra.get("resumed_at_steps", []),
        "samples_per_s": round(result.extra["last_metrics"].get("samples_per_s", 0.0), 1),
        "mfu": round(result.extra["last_metrics"].get("mfu", 0.0), 4), "phase_s": result.extra.get("phase_s", {}),
    }
    done.write_text(json.dumps(record, indent=2, default=str))
    return record


def evaluate(config: PipelineConfig) -> dict[str, Any]:
    """Test scores of the trained model and of the untrained start model (the baseline)."""
    from skillgen.common import load_skills
    from skilltrain.evaluation.evaluate import evaluate as run_eval
    from skilltrain.evaluation.evaluate import format_table, load_benchmarks, results_json
    from skilltrain.model import EVAL_RESULTS_FILE, BiEncoder

    ev = config.evaluation
    skills = load_skills(config.esco)
    benchmarks = load_benchmarks(skills, ev.sets, ev.split, config.benchmark_dir)
    train_config = config.train_config()

    run_dir, model_dir = resolve(config.run_dir), resolve(config.model_dir)
    baseline: dict[str, Any] | None = None
    baseline_path = run_dir / f"baseline_{ev.split}.json"
    if ev.baseline:
        enter_stage(config, "baseline", {"model": train_config.model, "sets": ev.sets, "split": ev.split,
                                         "esco": file_identity(config.esco), "benchmarks": file_identity(config.benchmark_dir)},
                    [baseline_path])
        if baseline_path.exists():
            baseline = json.loads(baseline_path.read_text())
        else:
            # the start model as published (its own max_seq_length), comparable with the literature
            start = BiEncoder.from_pretrained(train_config.model)
            baseline = results_json(run_eval(start, skills, benchmarks, progress=True))
            baseline_path.write_text(json.dumps(baseline, indent=2))

    # fit() already scored the exported model on the test split; reuse that rather than encode twice
    saved_path = model_dir / EVAL_RESULTS_FILE
    saved = json.loads(saved_path.read_text()).get(ev.split) if saved_path.exists() else None
    if saved and all(name in saved for name in ev.sets):
        results = {name: saved[name] for name in ev.sets}
    else:
        results = results_json(run_eval(load_model(model_dir), skills, benchmarks, progress=True))
        if ev.split == "test":  # the model's own record (and so its card) keeps the test scores it lacked
            saved_all = json.loads(saved_path.read_text()) if saved_path.exists() else {}
            saved_path.write_text(json.dumps({**saved_all, "test": {**(saved or {}), **results}}, indent=2))
    (run_dir / f"results_{ev.split}.json").write_text(json.dumps(results, indent=2))
    if baseline:  # without a baseline the trained model's table is the one fit() already printed
        print(format_table(baseline, title=f"zero-shot start model ({ev.split})"))
        print(format_table(results, title=f"trained model ({ev.split}); in brackets: change vs zero-shot", baseline=baseline))
    return {"results": results, "baseline": baseline}


def load_model(model_dir):
    """The exported model from a local dir, or downloaded from object storage into a temp dir."""
    import tempfile

    from skilltrain.model import BiEncoder

    if model_dir.is_local:
        return BiEncoder.from_pretrained(model_dir.local_path)
    with tempfile.TemporaryDirectory(prefix="pipeline-model-") as tmp:
        model_dir.download_dir(Path(tmp))
        return BiEncoder.from_pretrained(Path(tmp))


def run_pipeline(config: PipelineConfig) -> dict[str, Any]:
    """One writer per run dir: a second pipeline on it is refused in one line (exit 2) naming the first."""
    from skillgen import RunDirLease

    run_dir = resolve(config.run_dir, "run_dir")
    run_dir.mkdir()
    with RunDirLease.acquire(config.run_dir, purpose="pipeline"):
        return _run_pipeline(config, run_dir)


def _run_pipeline(config: PipelineConfig, run_dir: Location) -> dict[str, Any]:
    (run_dir / "pipeline.json").write_text(json.dumps(config.public_json(), indent=2))
    outcome: dict[str, Any] = {}
    stage_s: dict[str, float] = {}
    # One Ray for both stages: the given address, $RAY_ADDRESS under `ray job submit`, else a new local
    # one, with its dashboard (Ray Train's placement-group cleaner needs the State API it serves).
    init_ray(config.ray_address)
    with ExitStack() as stack, _timed(stage_s, "generation"):
        base_url = start_simulator(config, stack) if config.uses_simulator else None
        log.info("stage 1/4: generation -> %s", config.generation_dir)
        outcome["generation"] = generate(config, base_url)
    with _timed(stage_s, "training"):
        log.info("stage 2/4: training -> %s", config.model_dir)
        outcome["training"] = train(config)
    with _timed(stage_s, "evaluation"):
        log.info("stage 3/4: evaluation")
        outcome["evaluation"] = evaluate(config)
    with _timed(stage_s, "report"):
        log.info("stage 4/4: report")
        from cluster.run_report import write_report
        from skillgen import quality_report

        outcome["data_report"] = quality_report(config.generation_dir)
        report = write_report(config, outcome)
        write_model_card(config, outcome)
    paths = {"run_dir": str(run_dir), "model": str(resolve(config.model_dir)), "report": str(report)}
    summary = PipelineSummary.of(config.evaluation.split, outcome["evaluation"],
                                 outcome["generation"]["summary"].get("total_cost_usd"), stage_s, paths)
    outcome["summary"] = summary
    (run_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    return outcome


def write_model_card(config: PipelineConfig, outcome: dict[str, Any]) -> None:
    """Rewrite the model's card (``fit`` wrote one) with what only the pipeline knows: the zero-shot
    baseline and the data report's headline numbers, next to the test scores of ``eval_results.json``."""
    from skilltrain.card import write_card

    baseline = outcome["evaluation"].get("baseline") if config.evaluation.split == "test" else None
    write_card(resolve(config.model_dir), baseline=baseline, data_report=outcome["data_report"].headline())


@contextmanager
def _timed(into: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        into[stage] = round(time.perf_counter() - started, 1)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        prog="python -m cluster.pipeline",
        description=(
            "Generate synthetic job-ad sentences for ESCO skills, train the bi-encoder on them with Ray Train, "
            "evaluate on TECH/HOUSE and write a report. Rerun the same command to resume."
        ),
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="pipeline TOML (see cluster/configs/)")
    parser.add_argument("--run-dir", default=None, help="override the config's run_dir (outputs, resume state): a path or s3://bucket/prefix")
    parser.add_argument("--address", default=None, help="Ray address; default: $RAY_ADDRESS (set by ray job submit) or a local Ray")
    parser.add_argument("--esco", type=Path, default=None, help=ESCO_HELP)
    parser.add_argument("--benchmark-dir", type=Path, default=None, help=BENCHMARK_DIR_HELP)
    parser.add_argument("--estimate", action="store_true", help="print the generation cost estimate and exit (spends nothing)")
    parser.add_argument("--json", action="store_true", help="print the final summary as JSON (scores, cost, stage times, paths)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


@contextmanager
def stdout_kept_for_result() -> Iterator[TextIO]:
    """Send everything else written to stdout to stderr, and yield a stream to the real stdout.

    Why: with ``--json`` stdout must be exactly one JSON document (``... --json | jq``), but the
    estimate, Ray's forwarded worker output and child processes all write to file descriptor 1.
    Pointing fd 1 at stderr for the run catches them all; the result goes to a saved copy of it.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    result = os.fdopen(os.dup(saved), "w")
    try:
        yield result
    finally:
        result.close()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        config = load_pipeline_config(
            args.config,
            {"run_dir": args.run_dir, "ray_address": args.address, "esco": args.esco, "benchmark_dir": args.benchmark_dir},
        )
        check_pipeline(config)  # before Ray, the simulator, pipeline.json, the lease or a request
        if args.estimate:
            print_estimate(config)
        elif args.json:
            with stdout_kept_for_result() as result:
                summary = run_pipeline(config)["summary"]
                result.write(json.dumps(summary.to_dict(), indent=2) + "\n")
        else:
            print(run_pipeline(config)["summary"].format(), flush=True)
    except UserError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pipeline: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
