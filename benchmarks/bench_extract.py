"""Extraction throughput: our extractor against plain sentence-transformers, per backend; end to end; Ray Data.

``compare`` (the issue-15 acceptance number): in one process, on the same
unique job-ad sentences (~15 words; generated here from a seeded template
grammar, nothing downloaded), times
  * plain sentence-transformers as a new user writes it:
    ``SentenceTransformer.encode(batch_size=64, normalize_embeddings=True)``,
    then ``emb @ labels.T`` and ``torch.topk`` against the 13,896 label embeddings;
  * ``SkillExtractor.extract_sentences(top_k=5)`` on the default backend and on
    every selectable one.
Paths are interleaved in rounds over slices of the corpus (each path sees every
sentence once), so load from other processes on a shared machine hits all of
them alike; the ratio of the same run is the number that counts. A second
corpus repeats sentences (4 copies of each, shuffled within each timed slice)
to show deduplication separately. Rates are given per wall second and per CPU
second of this process (the steadier one when other work shares the cores). ``--quality`` adds RP@5 on the TECH/HOUSE test sets per backend.

    .venv/bin/python benchmarks/bench_extract.py compare --sentences 4000 --quality
    # GPU host without polars/ray: skills from a Parquet file written by `export-skills` here
    .venv/bin/python benchmarks/bench_extract.py export-skills --out skills.parquet
    python benchmarks/bench_extract.py compare --device cuda --model MODEL_DIR --skills-parquet skills.parquet
    .venv/bin/python benchmarks/bench_extract.py single --sentences 20000
    .venv/bin/python benchmarks/bench_extract.py ray --sentences 100000 --actors 1 2
    # BENCHMARKS.md "Extraction" (issue 26): backend x scoring x two-stage/exhaustive, the C curve, the arithmetic limit
    .venv/bin/python benchmarks/bench_extract.py table --model runs/local/model [--quick] [--save table.json]

``single`` times ``SkillExtractor.extract`` end to end on whole job ads (split +
encode + top-k) after the model and the (cached) skill index are loaded;
``ray`` times ``run_batch`` from Parquet in to Parquet out, including Ray
start-up and actor model loading. Peak memory is the process's max RSS.
Only stdlib and numpy are imported at module level: ``compare`` needs torch,
transformers, sentence-transformers and pyarrow, not polars or Ray.
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


CONTEXTS = ["working closely with the {f} team", "in our fast-growing office near the station",
            "together with experienced colleagues", "for customers across the region", "as part of a small friendly team",
            "under the supervision of the {f} manager", "from day one of your training"]


def unique_sentences(n: int, seed: int = 1) -> list[str]:
    """``n`` distinct single sentences of ~15 words (the issue's corpus): a template plus a context clause."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        base = _sentence(rng, len(out))
        if len(base.split()) > 25:  # the run-on template is for the windowing benchmark, not this one
            continue
        out[f"{base}, {rng.choice(CONTEXTS).format(f=rng.choice(FIELDS))}"] = None
    return list(out)


def repeated_corpus(n: int, blocks: int, copies: int = 4, seed: int = 2) -> list[str]:
    """``n`` sentences, each distinct one ``copies`` times (boilerplate-heavy corpora).

    Shuffled within each of ``blocks`` consecutive blocks, so every slice that
    :func:`interleaved_rates` times repeats its sentences ``copies`` times too.
    """
    rng = random.Random(seed)
    distinct = unique_sentences(n // copies, seed=seed)
    out: list[str] = []
    for part in np.array_split(np.arange(len(distinct)), blocks):
        block = [distinct[i] for i in part] * copies
        rng.shuffle(block)
        out += block
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_avg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def bench_single(args: argparse.Namespace) -> dict:
    import torch

    from skilltrain.extraction.extractor import SkillExtractor

    if args.threads:
        torch.set_num_threads(args.threads)
    ads = synthetic_ads(args.sentences)
    t0 = time.perf_counter()
    extractor = SkillExtractor.from_pretrained(args.model, args.esco, backend=args.backend, bf16=args.bf16, device=args.device)
    load_s = time.perf_counter() - t0
    extractor.extract(ads[:20], top_k=args.top_k)  # warm-up
    t0 = time.perf_counter()
    results = extractor.extract(ads, top_k=args.top_k)
    seconds = time.perf_counter() - t0
    sentences = [s.sentence for r in results for s in r.sentences]
    return {
        "mode": "single", "backend": extractor.backend, "torch_threads": torch.get_num_threads(), "documents": len(ads),
        "sentences": len(sentences), "unique_sentences": len(set(sentences)),
        "mean_words": round(float(np.mean([len(s.split()) for s in sentences])), 1),
        "skills_ranked": extractor.n_skills, "top_k": args.top_k, "load_s": round(load_s, 1), "seconds": round(seconds, 1),
        "sentences_per_s": round(len(sentences) / seconds), "peak_rss_mib": round(peak_rss_mib()), "load_avg": load_avg(),
    }


def load_skill_table(args: argparse.Namespace):
    """(skills table, taxonomy path or None): from --skills-parquet with pyarrow only, else the ESCO CSV via polars."""
    if args.skills_parquet is not None:
        import pyarrow.parquet as pq

        return pq.read_table(args.skills_parquet, columns=["skill_id", "label"]), None
    from skillgen.common.taxonomy import load_skills, resolve_esco_path

    path = resolve_esco_path(args.esco)
    return load_skills(path), path


def build_extractors(args: argparse.Namespace, backends: list[str]) -> dict:
    """One extractor per backend over one fp32 skill index (built once, cached like ``from_pretrained`` caches it)."""
    from skilltrain.extraction.extractor import SkillExtractor, index_cache_dir, taxonomy_cache_key
    from skilltrain.model import BiEncoder, check_encoder_dir, default_model_dir
    from skilltrain.ranking import SkillIndex

    model_dir = check_encoder_dir(args.model if args.model is not None else default_model_dir())
    skills, taxonomy_path = load_skill_table(args)
    cache = index_cache_dir(model_dir)
    index = SkillIndex.build(BiEncoder.from_pretrained(model_dir).to(args.device), skills, cache_dir=cache,
                             cache_key=taxonomy_cache_key(model_dir, taxonomy_path, skills))
    return {b: SkillExtractor.with_index(BiEncoder.from_pretrained(model_dir), model_dir, index, backend=b, device=args.device,
                                         batch_size=args.batch_size, cache_dir=cache) for b in backends}


def plain_sentence_transformers(model_dir, label_embeddings, device: str):
    """What a sentence-transformers user writes: encode(batch 64, normalised), matmul, topk."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device=device)
    labels = torch.from_numpy(label_embeddings).to(device)

    def run(sentences: list[str]):
        emb = model.encode(sentences, batch_size=64, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)
        scores, idx = torch.topk(emb @ labels.T, 5, dim=1)
        return idx.cpu(), scores.cpu()

    run.model = model
    return run


def interleaved_rates(paths: dict, sentences: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """Sentences per wall second and per CPU second (all threads of this process) per path.

    Each round times every path on the next slice, in a rotated order. On a
    machine shared with other work the CPU-second rate is the steadier one:
    time this process waits for a core is not counted.
    """
    wall, cpu = dict.fromkeys(paths, 0.0), dict.fromkeys(paths, 0.0)
    names = list(paths)
    for r, part in enumerate(np.array_split(np.arange(len(sentences)), rounds)):
        chunk = [sentences[i] for i in part]
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            paths[name](chunk)
            wall[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
    return {"per_s": {n: len(sentences) / wall[n] for n in names}, "per_cpu_s": {n: len(sentences) / cpu[n] for n in names}}


def rank_share(extractor, sentences: list[str]) -> dict:
    """Encode vs top-k seconds of the default path on ``sentences`` (the ranking's share of the time)."""
    t0 = time.perf_counter()
    emb = extractor.encoder.encode(sentences)
    t1 = time.perf_counter()
    extractor.rank_embeddings(emb, 5)
    t2 = time.perf_counter()
    return {"encode_s": round(t1 - t0, 3), "rank_s": round(t2 - t1, 3), "rank_share": round((t2 - t1) / (t2 - t0), 3)}


def bench_compare(args: argparse.Namespace) -> dict:
    import torch

    from skilltrain.extraction.backends import BACKENDS, default_backend, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.device = str(device)
    default = default_backend(device)
    usable = [b for b in BACKENDS if not (device.type != "cpu" and b.startswith("onnx")) and not (device.type == "cpu" and b == "torch-fp16")]
    backends = [default] + [b for b in (args.backends or usable) if b != default]
    extractors = build_extractors(args, backends)
    st = plain_sentence_transformers(_model_dir(args), extractors[default].index.embeddings, args.device)
    paths = {"sentence-transformers": st}
    paths.update({f"ours:{b}": (lambda ex: lambda chunk: ex.extract_sentences(chunk, top_k=5))(ex) for b, ex in extractors.items()})
    for run in paths.values():  # warm-up: first calls allocate, pick kernels, fault in weights
        run(unique_sentences(64, seed=99))
    result = {"mode": "compare", "device": args.device, "default_backend": default, "torch_threads": torch.get_num_threads(),
              "load_avg_before": load_avg()}
    for corpus_name, corpus in (("unique", unique_sentences(args.sentences)), ("repeated", repeated_corpus(args.sentences, args.rounds))):
        rates = interleaved_rates(paths, corpus, args.rounds)
        result[corpus_name] = {
            "sentences": len(corpus), "distinct": len(set(corpus)),
            "mean_words": round(float(np.mean([len(s.split()) for s in corpus])), 1),
        }
        for kind, per in rates.items():
            base = per["sentence-transformers"]
            result[corpus_name][f"sentences_{kind}"] = {k: round(v) for k, v in per.items()}
            result[corpus_name][f"ratio_{kind}_vs_sentence_transformers"] = {k: round(v / base, 2) for k, v in per.items()}
        print(json.dumps({corpus_name: result[corpus_name], "load_avg": load_avg()}), flush=True)
    result["default_rank_share"] = rank_share(extractors[default], unique_sentences(1000, seed=3))
    if args.quality:
        from skilltrain.extraction.quality import rp_at_5

        result["rp_at_5_test"] = {b: {k: round(v, 2) for k, v in rp_at_5(ex, "test", directory=args.benchmark_dir).items()}
                                  for b, ex in extractors.items()}
    result["load_avg_after"] = load_avg()
    return result


def _model_dir(args: argparse.Namespace):
    from skilltrain.model import check_encoder_dir, default_model_dir

    return check_encoder_dir(args.model if args.model is not None else default_model_dir())


def export_skills(args: argparse.Namespace) -> dict:
    """Write the taxonomy's (skill_id, label) rows as Parquet, for ``compare --skills-parquet`` on hosts without polars."""
    skills, path = load_skill_table(args)
    skills.select(["skill_id", "label"]).write_parquet(args.out)
    return {"mode": "export-skills", "taxonomy": str(path), "skills": skills.height, "out": str(args.out)}


def _write_ads(ads: list[str], directory: Path, files: int = 8) -> Path:
    import polars as pl

    directory.mkdir()
    per_file = max(1, len(ads) // files)
    for i in range(0, len(ads), per_file):
        pl.DataFrame({"id": list(range(i, i + len(ads[i:i + per_file]))), "text": ads[i:i + per_file]}).write_parquet(directory / f"part-{i:06d}.parquet")
    return directory


def bench_ray(args: argparse.Namespace) -> list[dict]:
    """Per actor count: a probe run on ``--probe-sentences`` (~all fixed cost: Ray start-up, model
    load, index shipping, write) and the full run; the steady rate is the difference quotient."""
    import polars as pl

    from skilltrain.extraction.bulk import run_batch

    out = []
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        sources = {"probe": _write_ads(synthetic_ads(args.probe_sentences), Path(tmp) / "probe"),
                   "full": _write_ads(synthetic_ads(args.sentences), Path(tmp) / "full")}
        for actors in args.actors:
            runs = {}
            for name, src in sources.items():
                dest = Path(tmp) / f"out_{name}_{actors}"
                runs[name] = run_batch([src], dest, model_dir=args.model, taxonomy=args.esco, top_k=args.top_k, actors=actors,
                                       cpus_per_actor=args.cpus_per_actor, backend=args.backend, bf16=args.bf16, progress=False)
            probe, full = runs["probe"], runs["full"]
            unique = pl.read_parquet(full.out_dir / "*.parquet", columns=["sentence"])["sentence"].n_unique()
            out.append({
                "mode": "ray", "actors": actors, "cpus_per_actor": args.cpus_per_actor, "backend": args.backend or ("torch-bf16" if args.bf16 else "default"),
                "documents": full.documents, "sentences": full.rows, "unique_sentences": unique, "seconds": round(full.seconds, 1),
                "end_to_end_sentences_per_s": round(full.rows / full.seconds),
                "probe_sentences": probe.rows, "fixed_s": round(probe.seconds, 1),
                "steady_sentences_per_s": round((full.rows - probe.rows) / max(full.seconds - probe.seconds, 1e-9)),
                "driver_peak_rss_mib": round(peak_rss_mib()), "load_avg": load_avg(),
            })
            print(json.dumps(out[-1]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("compare", "single", "ray", "export-skills", "table"))
    parser.add_argument("--sentences", type=int, default=None, help="default: 4000 (compare), 20000 (single, ray)")
    parser.add_argument("--model", type=Path, default=None, help="default: bundled all-MiniLM-L6-v2")
    parser.add_argument("--esco", type=Path, default=None)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="single/ray: backend torch-bf16")
    parser.add_argument("--backend", default=None, help="single/ray: extraction backend (default: the extractor's)")
    parser.add_argument("--backends", nargs="+", default=None, help="compare: backends next to the default (default: all usable)")
    parser.add_argument("--device", default=None, help="compare/single: cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, default=None, help="compare: encoder batch (default: the extractor's)")
    parser.add_argument("--rounds", type=int, default=8, help="compare: interleaved slices per corpus")
    parser.add_argument("--quality", action="store_true", help="compare: RP@5 on TECH/HOUSE test per backend (needs polars)")
    parser.add_argument("--benchmark-dir", type=Path, default=None, help="compare --quality: TECH/HOUSE CSVs (default: shared data)")
    parser.add_argument("--skills-parquet", type=Path, default=None, help="compare: skill_id,label Parquet instead of the ESCO CSV")
    parser.add_argument("--out", type=Path, default=Path("skills.parquet"), help="export-skills: output Parquet")
    parser.add_argument("--threads", type=int, default=None, help="single: torch threads (default: cores)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument("--probe-sentences", type=int, default=300, help="ray: small run that measures the fixed cost")
    parser.add_argument("--quick", action="store_true", help="table: small corpora, 3 rounds, C in 32/128/512 (a smoke run)")
    parser.add_argument("--save", type=Path, default=None, help="table: also write the JSON result here")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.sentences is None and args.mode != "table":
        args.sentences = 4000 if args.mode == "compare" else 20000
    if args.mode == "table":
        from extract_table import bench_table

        result = bench_table(args)
        if args.save is not None:
            args.save.write_text(json.dumps(result, indent=2))
        return 0
    run = {"compare": bench_compare, "single": bench_single, "ray": bench_ray, "export-skills": export_skills}[args.mode]
    result = run(args)
    if args.mode != "ray":
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
