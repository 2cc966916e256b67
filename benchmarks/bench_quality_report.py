"""How long ``skillgen report`` takes on a full-size run dir: every ESCO skill x 10 simulator sentences.

    .venv/bin/python benchmarks/bench_quality_report.py --run-dir benchmarks/out/quality140k --repeats 3

The run dir is built once (cached) from the simulator's own sentence writer
(:mod:`skillgen.simulator.content`, fed the real prompt of each of the 13,896 skills), written as
70 shards of 2,000 rows like a generation run's; no HTTP, so building it takes a minute, not the
run's time. Then :func:`skillgen.quality.quality_report` is timed end to end (read the shards, every
measure, the taxonomy join for the samples), ``--repeats`` times; the median is reported with
the load average.

``--relevance`` then times ``skillgen report --relevance`` (:func:`skillgen.quality.relevance.relevance_report`,
the bundled MiniLM ranking all 13,896 skills for every sentence) once with an empty label-embedding cache
and once warm, next to sentence-transformers encoding the same sentences (what a user would run instead);
``--skills N`` builds from the first N skills only (a smoke run):

    .venv/bin/python benchmarks/bench_quality_report.py --run-dir benchmarks/out/quality140k --repeats 1 --relevance
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path


def build(run_dir: Path, n: int, skills: int | None = None) -> int:
    """Write the simulator's sentences for every ESCO skill into ``run_dir`` (skipped when present)."""
    import polars as pl

    from skillgen.common.taxonomy import iter_skills, load_skills
    from skillgen.config import GenerationConfig
    from skillgen.llm.prompts import PromptSpec, build_messages
    from skillgen.rundir.sinks import ROW_SCHEMA, ROWS_DIR
    from skillgen.simulator.content import writer_for

    if (run_dir / "run.json").exists():
        return pl.scan_parquet(run_dir / ROWS_DIR / "*.parquet").select(pl.len()).collect().item()
    rng, now, rows, part = random.Random(0), datetime.now(timezone.utc), [], 0
    taxonomy = load_skills(None)
    for skill in iter_skills(taxonomy.head(skills) if skills else taxonomy):
        writer = writer_for(build_messages(skill, n, PromptSpec(n_sentences=n))[1]["content"])
        for i, sentence in enumerate(writer.sentences(rng, n)):
            rows.append({"skill_id": skill.skill_id, "label": skill.label, "sentence": sentence, "sample_idx": i,
                         "request_key": skill.skill_id, "model": "simulator", "prompt_version": "v1",
                         "prompt_tokens": 250, "completion_tokens": 200, "cost_usd": 0.0, "created_at": now})
        if len(rows) >= 2000:
            _flush(run_dir / ROWS_DIR, rows, part, ROW_SCHEMA)
            rows, part = [], part + 1
    _flush(run_dir / ROWS_DIR, rows, part, ROW_SCHEMA)
    config = GenerationConfig(base_url="http://127.0.0.1:1/v1", model="simulator", n_sentences=n, run_dir=str(run_dir))
    (run_dir / "run.json").write_text(json.dumps({"config": config.public_dict(), "fingerprint": config.fingerprint()}))
    return build(run_dir, n, skills)


def _flush(folder: Path, rows: list, part: int, schema) -> None:
    import polars as pl

    if rows:
        folder.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(rows, schema=schema).write_parquet(folder / f"part-{part:05d}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--run-dir", type=Path, default=Path("benchmarks/out/quality140k"))
    parser.add_argument("--sentences", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    parser.add_argument("--skills", type=int, default=None, help="build from the first N skills only (default: all)")
    parser.add_argument("--relevance", action="store_true", help="also time the relevance report, cold and warm")
    args = parser.parse_args()

    from skillgen.quality import quality_report

    t0 = time.perf_counter()
    rows = build(args.run_dir, args.sentences, args.skills)
    built_s = time.perf_counter() - t0
    times, report = [], None
    for _ in range(args.repeats):
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        report = quality_report(args.run_dir)
        times.append((round(time.perf_counter() - t0, 2), round(load, 1)))
    result = {"rows": rows, "build_s": round(built_s, 1), "report_s_and_load1": times,
              "median_s": statistics.median(t for t, _ in times), "headline": report.headline()}
    if args.relevance:
        result["relevance"] = time_relevance(args.run_dir)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


def time_relevance(run_dir: Path) -> dict:
    """``relevance_report`` with a fresh label cache (13,896 labels encoded) and again with it warm."""
    import tempfile

    from skillgen.quality.relevance import relevance_report

    out = {}
    with tempfile.TemporaryDirectory(prefix="relevance-cache-") as cache:
        os.environ["SKILLGEN_CACHE_DIR"] = cache
        for run in ("cold_cache", "warm_cache"):
            load, cpu, t0 = os.getloadavg()[0], time.process_time(), time.perf_counter()
            report = relevance_report(run_dir, progress=True)
            wall = time.perf_counter() - t0
            out[run] = {"wall_s": round(wall, 1), "cpu_s": round(time.process_time() - cpu, 1), "load1_start": round(load, 1),
                        "sentences_per_s": round(report.sentences / wall, 1)}
    out["headline"] = report.headline()
    out["sentence_transformers_encode"] = reference_encode(run_dir)
    out["warm_vs_reference"] = round(out["warm_cache"]["wall_s"] / out["sentence_transformers_encode"]["wall_s"], 2)
    return out


def reference_encode(run_dir: Path) -> dict:
    """What a user would run instead: sentence-transformers encoding the same unique sentences with the same model
    (ranking not included, so the ratio above is an upper bound on our overhead)."""
    from sentence_transformers import SentenceTransformer

    from skillgen.quality.encoder import bundled_model_dir
    from skillgen.rundir.sinks import read_rows

    sentences = sorted(set(read_rows(run_dir)["sentence"].to_list()))
    model = SentenceTransformer(str(bundled_model_dir()), device="cpu")
    load, t0 = os.getloadavg()[0], time.perf_counter()
    model.encode(sentences, batch_size=128, normalize_embeddings=True)
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 1), "load1_start": round(load, 1), "sentences": len(sentences)}


if __name__ == "__main__":
    main()
