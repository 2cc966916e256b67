"""BENCHMARKS.md "Extraction" in one run: ``bench_extract.py table`` (issue 26).

In one process, interleaved in rounds (each path sees every sentence once, in a
rotated order, so load from other processes falls on all paths alike), on three
corpora:

* ``test``: the unique TECH + HOUSE test sentences, lengths as they come;
* ``ads``: multi-sentence ads built from them (bullets, split by the extractor;
  the baseline gets the same split sentences);
* ``synthetic``: unique ~15-word template sentences (``unique_sentences``);

it times plain sentence-transformers as a user writes it (``encode`` + cosine
top-5, pooled: the baseline every ratio is against) and ``SkillExtractor`` per
backend x scoring: pooled, token attention two-stage (the model's C),
two-stage + coverage-aware top-k, token attention exhaustive, and the
exhaustive ranking as it was before issue 26 (padded token tensors, 128 MB
chunks: ``before``). RP@5 is on TECH/HOUSE test through the same extractor.

Then the C curve (validation RP@5 / RP@10 by C, with the extraction rate of each C
on the synthetic corpus beside sentence-transformers) and the arithmetic limit:
FLOPs per sentence of encoding and of each scoring, the measured float32 GEMM
rate at the exhaustive kernel's block shape, and the rates they imply.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

QUICK = {"synthetic": 300, "test": 200, "rounds": 3, "grid": (32, 128, 512)}
FULL = {"synthetic": 2000, "test": None, "rounds": 6, "grid": (8, 16, 32, 64, 128, 256, 512, 1024, 2048)}


def benchmark_sentences(split: str, directory=None) -> list[str]:
    from skilltrain.evaluation.benchmarks import read_benchmark_rows

    return list(dict.fromkeys(s for name in ("tech", "house") for s in read_benchmark_rows(name, split, directory)["sentence"].to_list() if s.strip()))


def ads_from(sentences: list[str], seed: int = 0) -> list[str]:
    """Job ads of 4-9 bulleted sentences each, drawn from ``sentences`` (every one used once)."""
    rng = random.Random(seed)
    order = sentences[:]
    rng.shuffle(order)
    ads, i = [], 0
    while i < len(order):
        n = rng.randint(4, 9)
        ads.append("Your tasks:\n" + "\n".join(f"• {s}" for s in order[i : i + n]))
        i += n
    return ads


def set_scoring(extractor, scoring) -> None:
    """The scoring the extractor ranks with (the torch encoder reads its model's; ONNX keeps its own copy)."""
    if hasattr(extractor.encoder, "model"):
        extractor.encoder.model.scoring = scoring
    else:
        extractor.encoder.scoring = scoring


def ours(extractor, scoring, split_ads: bool = False, **options):
    """A timed path: set the scoring, then extract (sentences as given, or whole ads split by the extractor)."""
    def run(items: list[str]):
        set_scoring(extractor, scoring)
        return extractor.extract(items, top_k=5, **options) if split_ads else extractor.extract_sentences(items, top_k=5, **options)
    return run


def padded_exhaustive(extractor, scoring):
    """Exhaustive token attention as it ranked before issue 26: padded (n, L, D) queries, 128 MB chunks, the
    differentiable reference kernel, then top 5."""
    import torch

    from skilltrain.scoring import token_attention_scores

    def run(items: list[str]):
        set_scoring(extractor, scoring)
        unique = list(dict.fromkeys(items))
        for first in range(0, len(unique), 1024):
            padded = extractor.encoder.encode_queries(unique[first : first + 1024]).padded()
            rows = max(1, 32 * 2**20 // (padded.tokens.shape[1] * extractor.n_skills))
            for start in range(0, len(padded.tokens), rows):
                scores = token_attention_scores(padded.tokens[start : start + rows], padded.mask[start : start + rows],
                                                extractor._matrix, padded.temperature)
                torch.topk(scores, 5, dim=1)
    return run


def st_rp_at_5(st_model, labels: list[str], embeddings: np.ndarray, directory=None) -> dict[str, float]:
    """RP@5 of plain sentence-transformers (pooled cosine) on TECH/HOUSE test."""
    import torch

    from skilltrain.evaluation.benchmarks import load_benchmark
    from skilltrain.evaluation.metrics import rp_at_k

    out, matrix = {}, torch.from_numpy(embeddings)
    for name in ("tech", "house"):
        bench = load_benchmark(name, "test", set(labels), directory)
        emb = st_model.encode([s.sentence for s in bench], batch_size=64, normalize_embeddings=True, convert_to_tensor=True)
        top = torch.topk(emb @ matrix.T, 5, dim=1).indices.tolist()
        out[name] = float(np.mean([rp_at_k([labels[i] for i in row], set(s.gold_labels), 5) for row, s in zip(top, bench)])) * 100
    return out


def arithmetic(extractor, model_dir: Path, sentences: list[str], candidates: int | None) -> dict:
    """FLOPs per sentence (encoder forward; pooled, two-stage and exhaustive scoring) and the measured GEMM rate."""
    from transformers import AutoConfig

    from skilltrain.kernels import measured_matmul_gflops

    config = AutoConfig.from_pretrained(str(model_dir))
    queries = extractor.encoder.encode_queries(sentences[:500])
    attended = float(queries.lengths.float().mean())
    tokens = attended + 2  # [CLS], [SEP]
    d, layers = config.hidden_size, config.num_hidden_layers
    encode = layers * tokens * (2 * (4 * d * d + 2 * d * config.intermediate_size) + 4 * tokens * d)
    skills, dim = extractor.n_skills, extractor.index.embeddings.shape[1]
    scoring = {"pooled": 2 * skills * dim, "exhaustive": 2 * attended * skills * dim}
    if candidates:
        scoring["two-stage"] = 2 * skills * dim + 2 * attended * candidates * dim
    rate = measured_matmul_gflops() * 1e9
    return {
        "mean_tokens": round(tokens, 1), "mean_attended_tokens": round(attended, 1),
        "encode_mflop_per_sentence": round(encode / 1e6, 1),
        "scoring_mflop_per_sentence": {k: round(v / 1e6, 1) for k, v in scoring.items()},
        "matmul_gflops_measured": round(rate / 1e9, 1),
        "limit_sentences_per_s_at_that_rate": {k: round(rate / (encode + v)) for k, v in scoring.items()},
    }


def c_curve(args, extractor, st_run, skills, grid, synthetic: list[str], rounds: int) -> list[dict]:
    """Validation RP@5/RP@10 by C (exhaustive first) and each C's extraction rate on ``synthetic`` next to sentence-transformers."""
    from bench_extract import interleaved_rates

    from skilltrain.evaluation.candidates import candidate_curve
    from skilltrain.evaluation.evaluate import encode_benchmarks, load_benchmarks
    from skilltrain.model import BiEncoder
    from skilltrain.ranking import SkillIndex

    encoder = BiEncoder.from_pretrained(extractor_model_dir(args)).eval()
    encoder.scoring = extractor.scoring
    index = SkillIndex(skills, extractor.index.embeddings)
    encoded = encode_benchmarks(encoder, index, load_benchmarks(skills, ["tech", "house"], "validation", args.benchmark_dir))
    points = candidate_curve(encoder, index, encoded, grid)
    base = replace(extractor.scoring, diverse=False)
    paths = {"sentence-transformers": st_run}
    paths.update({str(p.candidates or "all"): ours(extractor, replace(base, candidates=p.candidates), exhaustive=p.candidates is None)
                  for p in points})
    rates = interleaved_rates(paths, synthetic, rounds)["per_s"]
    return [{**p.to_json(), "sentences_per_s": round(rates[str(p.candidates or "all")]),
             "ratio_to_sentence_transformers": round(rates[str(p.candidates or "all")] / rates["sentence-transformers"], 2)}
            for p in points]


def extractor_model_dir(args) -> Path:
    from skilltrain.model import check_encoder_dir, default_model_dir

    return check_encoder_dir(args.model if args.model is not None else default_model_dir())


def bench_table(args) -> dict:
    import torch

    from bench_extract import build_extractors, interleaved_rates, load_avg, load_skill_table, plain_sentence_transformers, unique_sentences

    from skilltrain.extraction.quality import rp_at_5
    from skilltrain.scoring import ScoringConfig

    sizes = QUICK if args.quick else FULL
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = "cpu"
    backends = args.backends or ["onnx-fp32", "torch-fp32"]
    started, load_before = time.perf_counter(), load_avg()
    extractors = build_extractors(args, backends)
    first = extractors[backends[0]]
    token = first.scoring
    if not token.token_level:
        raise SystemExit(f"{extractor_model_dir(args)}: not a token-attention model (the table compares its rankings)")
    pooled = ScoringConfig("pooled")
    plain = replace(token, diverse=False)
    skills, _ = load_skill_table(args)
    st = plain_sentence_transformers(extractor_model_dir(args), first.index.embeddings, "cpu")

    test = benchmark_sentences("test", args.benchmark_dir)[: sizes["test"]]
    ads = ads_from(test)
    corpora = {"test": test, "ads": ads, "synthetic": unique_sentences(args.sentences or sizes["synthetic"])}
    rows: dict[str, dict] = {}

    def add(name, backend, scoring_name, mode, rp5):
        rows[name] = {"backend": backend, "scoring": scoring_name, "mode": mode, "rp5_test": rp5}

    add("sentence-transformers", "sentence-transformers", "pooled", "-", st_rp_at_5(st.model, first.labels, first.index.embeddings, args.benchmark_dir))
    for backend, ex in extractors.items():
        set_scoring(ex, pooled)
        add(f"{backend} pooled", backend, "pooled", "-", rp_at_5(ex, "test", directory=args.benchmark_dir))
        set_scoring(ex, plain)
        add(f"{backend} two-stage", backend, "token attention", f"two-stage (C={token.candidates})",
            rp_at_5(ex, "test", directory=args.benchmark_dir))
        add(f"{backend} exhaustive", backend, "token attention", "exhaustive",
            rp_at_5(ex, "test", directory=args.benchmark_dir, exhaustive=True))
    set_scoring(first, plain)
    add(f"{backends[0]} two-stage diverse", backends[0], "token attention", f"two-stage, diverse ({token.diversity:g})",
        rp_at_5(first, "test", directory=args.benchmark_dir, diverse=True))
    add(f"{backends[0]} exhaustive before", backends[0], "token attention", "exhaustive, padded (before issue 26)",
        rows[f"{backends[0]} exhaustive"]["rp5_test"])

    result = {"mode": "table", "model": str(extractor_model_dir(args)), "torch_threads": torch.get_num_threads(),
              "scoring": {"temperature": token.attention_temperature, "candidates": token.candidates, "diversity": token.diversity},
              "load_avg_before": load_before, "corpora": {}}
    for corpus_name, items in corpora.items():
        split_ads = corpus_name == "ads"
        sentences = [s for ad in items for s in first.split(ad)] if split_ads else items
        paths = {"sentence-transformers": (lambda run: lambda chunk: run([s for ad in chunk for s in first.split(ad)]))(st) if split_ads else st}
        for backend, ex in extractors.items():
            paths[f"{backend} pooled"] = ours(ex, pooled, split_ads)
            paths[f"{backend} two-stage"] = ours(ex, plain, split_ads)
            paths[f"{backend} exhaustive"] = ours(ex, plain, split_ads, exhaustive=True)
        paths[f"{backends[0]} two-stage diverse"] = ours(first, plain, split_ads, diverse=True)
        if not split_ads:
            paths[f"{backends[0]} exhaustive before"] = padded_exhaustive(first, plain)
        for run in paths.values():  # warm-up
            run(items[:16])
        rates = interleaved_rates(paths, items, sizes["rounds"] if corpus_name != "synthetic" else sizes["rounds"] * 2)
        per_s, per_cpu = rates["per_s"], rates["per_cpu_s"]
        scale = len(sentences) / len(items)  # rates in sentences (an ad holds several)
        result["corpora"][corpus_name] = {
            "items": len(items), "sentences": len(sentences), "mean_words": round(float(np.mean([len(s.split()) for s in sentences])), 1),
            "sentences_per_s": {k: round(v * scale, 1) for k, v in per_s.items()},
            "ratio_to_sentence_transformers": {k: round(v / per_s["sentence-transformers"], 2) for k, v in per_s.items()},
            # per CPU second of this process: the steadier ratio when other work shares the cores
            "cpu_ratio_to_sentence_transformers": {k: round(v / per_cpu["sentence-transformers"], 2) for k, v in per_cpu.items()},
        }
        print(json.dumps({corpus_name: result["corpora"][corpus_name], "load_avg": load_avg()}), flush=True)
    result["rows"] = rows
    set_scoring(first, plain)  # the timed paths leave it as the last one set; the curve and arithmetic need the model's
    result["c_curve"] = c_curve(args, first, st, skills, sizes["grid"], corpora["synthetic"][: max(200, len(corpora["synthetic"]) // 2)],
                                sizes["rounds"])
    result["arithmetic"] = arithmetic(first, extractor_model_dir(args), corpora["synthetic"], token.candidates)
    result["load_avg_after"], result["seconds"] = load_avg(), round(time.perf_counter() - started)
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    """The table and the curve as BENCHMARKS.md shows them."""
    corpora = list(result["corpora"])
    head = ("| backend | scoring | ranking | " + " | ".join(f"{c}: sentences/s | ratio | CPU ratio" for c in corpora)
            + " | RP@5 TECH / HOUSE test |")
    lines = [head, "|" + "---|" * (3 + 3 * len(corpora) + 1)]
    for name, row in result["rows"].items():
        cells = []
        for c in corpora:
            corpus = result["corpora"][c]
            rate, ratio = corpus["sentences_per_s"].get(name), corpus["ratio_to_sentence_transformers"].get(name)
            cpu = corpus["cpu_ratio_to_sentence_transformers"].get(name)
            cells += [f"{rate:,.0f}" if rate is not None else "-"] + [f"{r:.2f}" if r is not None else "-" for r in (ratio, cpu)]
        rp = row["rp5_test"]
        lines.append(f"| {row['backend']} | {row['scoring']} | {row['mode']} | " + " | ".join(cells) + f" | {rp['tech']:.2f} / {rp['house']:.2f} |")
    lines += ["", "| C | TECH val RP@5 / RP@10 | HOUSE val RP@5 / RP@10 | synthetic sentences/s | ratio to sentence-transformers |",
              "|---|---|---|---|---|"]
    for p in result["c_curve"]:
        lines.append(f"| {p['candidates'] or 'all (exhaustive)'} | {p['tech']['RP@5']:.2f} / {p['tech']['RP@10']:.2f} | "
                     f"{p['house']['RP@5']:.2f} / {p['house']['RP@10']:.2f} | {p['sentences_per_s']:,} | {p['ratio_to_sentence_transformers']:.2f} |")
    a = result["arithmetic"]
    lines += ["", f"Arithmetic: {a['mean_tokens']} tokens/sentence ({a['mean_attended_tokens']} attended); encoder "
              f"{a['encode_mflop_per_sentence']} MFLOP/sentence; scoring {a['scoring_mflop_per_sentence']} MFLOP/sentence; "
              f"measured float32 GEMM {a['matmul_gflops_measured']} GFLOP/s -> at most {a['limit_sentences_per_s_at_that_rate']} sentences/s"]
    return "\n".join(lines)
