"""Pooled vs token-attention scoring of one encoder: quality by temperature, and extraction speed.

    .venv/bin/python benchmarks/bench_scoring.py --model runs/local/model --split validation \
        --temperatures 1,2,3,5 --out benchmarks/out/scoring.json
    .venv/bin/python benchmarks/bench_scoring.py --speed --sentences 2000 --out benchmarks/out/scoring_speed.json

Quality: the skill index (13,896 labels) is built once; the benchmark sentences are encoded once
per special-token setting, then scored pooled and with token attention at each temperature
(with and without [CLS]/[SEP] among the attended tokens). Tune on ``--split validation``; report test.

Speed (``--random-index`` skips encoding the labels: ranking costs the same for any vectors):
``SkillExtractor.extract_sentences`` (encode + rank all skills, top 5) on the same
TECH/HOUSE sentences repeated to ``--sentences`` unique ones, pooled then token attention, in one
process, after one warm-up call each; the ratio is what to read on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def quality(args: argparse.Namespace) -> dict:
    import numpy as np

    from skillgen.common.taxonomy import load_skills
    from skilltrain.evaluation.evaluate import load_benchmarks
    from skilltrain.evaluation.metrics import KS, score_rankings, with_ci
    from skilltrain.model import BiEncoder
    from skilltrain.ranking import SkillIndex
    from skilltrain.scoring import ScoringConfig

    skills = load_skills(None)
    model = BiEncoder.from_pretrained(args.model).eval()
    index = SkillIndex.build(model, skills)
    row = {label: i for i, label in enumerate(skills["label"].to_list())}
    results: dict[str, dict] = {}
    for bench in load_benchmarks(skills, args.sets.split(","), args.split):
        gold = [{row[g] for g in s.gold_labels} for s in bench.sentences]
        texts = [s.sentence for s in bench.sentences]

        def report(scores: np.ndarray) -> dict:
            r = with_ci(score_rankings(scores, gold, KS)) if args.ci else score_rankings(scores, gold, KS)
            return r.to_json()

        model.scoring = ScoringConfig("pooled")
        results[f"{bench.name}/pooled"] = report(index.scores(model.encode_queries(texts)))
        for exclude in (True, False):
            model.scoring = ScoringConfig("token_attention", exclude_special_tokens=exclude)
            queries = model.encode_queries(texts)
            for t in args.temperatures:
                key = f"{bench.name}/token T={t:g}{'' if exclude else ' +special'}"
                results[key] = report(index.scores(queries.with_temperature(t)))
                print(f"{key}: RP@5 {results[key]['RP@5']:.2f}", flush=True)
        print(f"{bench.name}/pooled: RP@5 {results[f'{bench.name}/pooled']['RP@5']:.2f}", flush=True)
    return results


def speed(args: argparse.Namespace) -> dict:
    from skillgen.common.taxonomy import load_skills
    from skilltrain.evaluation.benchmarks import read_benchmark_rows
    from skilltrain.extraction.backends import TorchEncoder
    from skilltrain.extraction.extractor import SkillExtractor
    from skilltrain.scoring import ScoringConfig

    base = [s for name in ("tech", "house") for s in read_benchmark_rows(name, "test")["sentence"].unique().to_list()]
    sentences = [f"{base[i % len(base)]} ({i // len(base)})" if i >= len(base) else base[i] for i in range(args.sentences)]
    skills = load_skills(None)
    out: dict = {"sentences": len(sentences), "load_avg_before": os.getloadavg()}
    for backend in args.backends.split(","):
        if args.random_index:  # throughput only: ranking costs the same whatever the vectors hold
            import numpy as np

            from skilltrain.model import BiEncoder, check_encoder_dir, default_model_dir
            from skilltrain.ranking import SkillIndex

            model_dir = check_encoder_dir(args.model or default_model_dir())  # a name (mpnet) resolves to its dir
            model = BiEncoder.from_pretrained(model_dir)
            vectors = np.random.default_rng(0).standard_normal((skills.height, model.dim)).astype(np.float32)
            index = SkillIndex(skills, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
            extractor = SkillExtractor.with_index(model, model_dir, index, backend=backend,
                                                  device="cpu", cache_dir=Path("/tmp/bench-scoring-cache"))
        else:
            extractor = SkillExtractor.from_pretrained(args.model, skills, backend=backend, device="cpu")
        for scoring in ("pooled", "token_attention"):
            chosen = ScoringConfig(scoring, attention_temperature=args.temperature)
            if isinstance(extractor.encoder, TorchEncoder):
                extractor.encoder.model.scoring = chosen
            else:  # ONNX: the scoring is the encoder's own copy
                extractor.encoder.scoring = chosen
            extractor.extract_sentences(sentences[:64])  # warm-up
            t0 = time.perf_counter()
            extractor.extract_sentences(sentences, top_k=5)
            wall = time.perf_counter() - t0
            out[f"{backend}/{scoring}"] = {"wall_s": round(wall, 2), "sentences_per_s": round(len(sentences) / wall, 1)}
            print(backend, scoring, out[f"{backend}/{scoring}"], flush=True)
    out["load_avg_after"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model", type=Path, default=None, help="encoder dir or a name: minilm, mpnet (default: bundled MiniLM)")
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--sets", default="tech,house")
    parser.add_argument("--temperatures", default="1,2,3,5")
    parser.add_argument("--ci", action="store_true", help="95%% bootstrap intervals")
    parser.add_argument("--speed", action="store_true", help="extraction sentences/s instead of quality")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--backends", default="torch-fp32,onnx-fp32")
    parser.add_argument("--temperature", type=float, default=3.0, help="speed: attention temperature")
    parser.add_argument("--random-index", action="store_true",
                        help="speed: random unit skill vectors instead of encoding 13,896 labels (same ranking cost)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.temperatures = [float(t) for t in args.temperatures.split(",")]
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "load_avg": os.getloadavg()}
    record["results"] = speed(args) if args.speed else quality(args)
    text = json.dumps(record, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
