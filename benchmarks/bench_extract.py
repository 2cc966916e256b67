"""Extraction throughput: single process (split + encode + top-k over all ESCO skills) and Ray Data batch mode.

The corpus is synthetic job ads generated here from a seeded template grammar
(headings, bullets, semicolon lists, boilerplate, some long run-on sentences),
so nothing is downloaded or committed. Sentences are unique by construction
(the extractor encodes each distinct sentence once, so duplicates would
inflate the numbers); the script prints their count and mean length.

    .venv/bin/python benchmarks/bench_extract.py single --sentences 20000
    .venv/bin/python benchmarks/bench_extract.py single --sentences 20000 --bf16
    .venv/bin/python benchmarks/bench_extract.py ray --sentences 100000 --actors 1 2

Numbers are end to end: ``single`` times ``SkillExtractor.extract`` on the
whole corpus after the model and the (cached) skill index are loaded (load
time reported separately); ``ray`` times ``run_batch`` from Parquet in to
Parquet out, including Ray start-up and actor model loading. Peak memory is the
process's max RSS (``ray``: the driver only; each actor holds its own model).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOOLS = ["Python", "SQL", "Java", "Excel", "SAP", "AutoCAD", "Kubernetes", "Docker", "Tableau", "Salesforce", "React",
         "AWS", "Azure", "Linux", "Git", "Power BI", "Spark", "Kafka", "Photoshop", "Figma", "C++", "Go", "R", "SPSS"]
TASKS = ["maintain the production line", "prepare monthly payroll", "inspect welding seams", "operate a forklift",
         "plan delivery routes", "train new staff", "negotiate with suppliers", "audit financial statements",
         "care for elderly patients", "bake bread and pastries", "install electrical wiring", "repair hydraulic systems",
         "manage customer complaints", "design marketing campaigns", "write technical documentation",
         "clean and disinfect rooms", "coordinate construction sites", "analyse sales data", "teach primary school pupils",
         "drive heavy goods vehicles", "prepare tax returns", "monitor network security", "cook meals for 200 guests",
         "sell insurance products", "assemble furniture", "test software releases", "handle incoming calls"]
QUALITIES = ["team player", "self-motivated", "detail-oriented", "customer-focused", "well organised", "flexible",
             "reliable", "analytical", "creative", "hands-on", "proactive", "calm under pressure"]
LANGUAGES = ["English", "German", "French", "Dutch", "Spanish", "Italian", "Polish"]
FIELDS = ["computer science", "nursing", "accounting", "mechanical engineering", "logistics", "hospitality",
          "business administration", "electrical engineering", "marketing", "education"]
BOILERPLATE = ["Apply now!", "We are an equal opportunity employer and value diversity at our company.",
               "Job ID: {n}", "https://careers.example.com/jobs/{n}", "Requirements:", "What you'll do:"]


def _sentence(rng: random.Random, n: int) -> str:
    t = rng.randrange(9)
    if t == 0:
        return f"{rng.randint(1, 10)}+ years of experience with {rng.choice(TOOLS)} and {rng.choice(TOOLS)} (ref {n})"
    if t == 1:
        return f"You will {rng.choice(TASKS)} and {rng.choice(TASKS)} in shift {n}"
    if t == 2:
        return f"Fluent {rng.choice(LANGUAGES)}, good {rng.choice(LANGUAGES)} is a plus; site {n}"
    if t == 3:
        return f"Degree in {rng.choice(FIELDS)} or equivalent experience, cohort {n}"
    if t == 4:
        return f"{rng.choice(QUALITIES).capitalize()} and {rng.choice(QUALITIES)} colleague for team {n}"
    if t == 5:
        return f"Able to {rng.choice(TASKS)} independently at location {n}"
    if t == 6:
        return f"Knowledge of {rng.choice(TOOLS)} is required for project {n}"
    if t == 7:
        words = " ".join(f"{rng.choice(TASKS)}, use {rng.choice(TOOLS)}" for _ in range(5))
        return f"In this role you {words} and report on case {n}"  # a run-on line: windowed
    return f"Responsible to {rng.choice(TASKS)} with {rng.choice(TOOLS)} for client {n}"


def synthetic_ads(n_sentences: int, seed: int = 0) -> list[str]:
    """Job ads totalling about ``n_sentences`` skill sentences (boilerplate lines come on top)."""
    rng = random.Random(seed)
    ads, made, n = [], 0, 0
    while made < n_sentences:
        lines = [f"Vacancy {len(ads)}: {rng.choice(FIELDS)} specialist", rng.choice(BOILERPLATE[4:])]
        k = min(rng.randint(6, 14), n_sentences - made)
        for _ in range(k):
            n += 1
            lines.append(f"{rng.choice(['•', '-', '*', '·', f'{rng.randint(1, 9)}.'])} {_sentence(rng, n)}")
        lines += [b.format(n=n) for b in rng.sample(BOILERPLATE[:4], 2)]
        ads.append("\n".join(lines))
        made += k + 1  # the title line is a sentence too
    return ads


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_avg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def bench_single(args: argparse.Namespace) -> dict:
    import torch

    from skilltrain.extraction.extract import SkillExtractor

    if args.threads:
        torch.set_num_threads(args.threads)
    ads = synthetic_ads(args.sentences)
    t0 = time.perf_counter()
    extractor = SkillExtractor.from_pretrained(args.model, args.esco, bf16=args.bf16)
    load_s = time.perf_counter() - t0
    extractor.extract(ads[:20], top_k=args.top_k)  # warm-up
    t0 = time.perf_counter()
    results = extractor.extract(ads, top_k=args.top_k)
    seconds = time.perf_counter() - t0
    sentences = [s.sentence for r in results for s in r.sentences]
    return {
        "mode": "single", "bf16": args.bf16, "torch_threads": torch.get_num_threads(), "documents": len(ads),
        "sentences": len(sentences), "unique_sentences": len(set(sentences)),
        "mean_words": round(float(np.mean([len(s.split()) for s in sentences])), 1),
        "skills_ranked": extractor.n_skills, "top_k": args.top_k, "load_s": round(load_s, 1), "seconds": round(seconds, 1),
        "sentences_per_s": round(len(sentences) / seconds), "peak_rss_mib": round(peak_rss_mib()), "load_avg": load_avg(),
    }


def bench_ray(args: argparse.Namespace) -> list[dict]:
    import polars as pl
    import pyarrow.parquet as pq

    from skilltrain.extraction.extract_batch import run_batch

    ads = synthetic_ads(args.sentences)
    out = []
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        src = Path(tmp) / "ads"
        src.mkdir()
        per_file = max(1, len(ads) // 8)
        for i in range(0, len(ads), per_file):
            pl.DataFrame({"id": list(range(i, i + len(ads[i:i + per_file]))), "text": ads[i:i + per_file]}).write_parquet(src / f"part-{i:06d}.parquet")
        for actors in args.actors:
            dest = Path(tmp) / f"out_{actors}"
            result = run_batch([src], dest, model_dir=args.model, taxonomy=args.esco, top_k=args.top_k, actors=actors,
                               cpus_per_actor=args.cpus_per_actor, bf16=args.bf16, progress=False)
            unique = pl.read_parquet(dest / "*.parquet", columns=["sentence"])["sentence"].n_unique()
            out.append({
                "mode": "ray", "actors": actors, "cpus_per_actor": args.cpus_per_actor, "bf16": args.bf16,
                "documents": result.documents, "sentences": result.rows, "unique_sentences": unique,
                "seconds": round(result.seconds, 1), "sentences_per_s": round(result.rows / result.seconds),
                "driver_peak_rss_mib": round(peak_rss_mib()), "load_avg": load_avg(),
                "output_files": len(list(dest.glob("*.parquet"))), "output_mib": round(sum(pq.ParquetFile(p).metadata.serialized_size + p.stat().st_size for p in dest.glob("*.parquet")) / 2**20, 1),
            })
            print(json.dumps(out[-1]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("single", "ray"))
    parser.add_argument("--sentences", type=int, default=20000)
    parser.add_argument("--model", type=Path, default=None, help="default: bundled all-MiniLM-L6-v2")
    parser.add_argument("--esco", type=Path, default=None)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="single: torch threads (default: cores)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    result = bench_single(args) if args.mode == "single" else bench_ray(args)
    if args.mode == "single":
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
