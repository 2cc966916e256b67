"""BENCHMARKS.md "Extraction": ONNX Runtime's thread spinning, end to end (issue 26).

ONNX Runtime's intra-op threads spin-wait for work between operators (its default) and keep spinning a while
after ``Run`` returns. Two-stage extraction runs its ranking right after each forward pass, so what the
threads do then matters. Three onnx-fp32 extractors of one model, differing only in the session's
spinning (``skilltrain.extraction.backends.SPINNING``), are timed against plain sentence-transformers in
interleaved rounds (``bench_extract``):

* ``never``: ``allow_spinning = 0`` (what extraction used from 2026-11-30);
* ``always``: ``allow_spinning = 1`` (ONNX Runtime's default);
* ``during-run``: ``allow_spinning = 1`` and ``force_spinning_stop = 1`` (what extraction uses now).

    .venv/bin/python benchmarks/bench_ort_spinning.py --model runs/local/model --rounds 12

Beside other work, start it under a CPU burner to see the shared-box case.
"""

from __future__ import annotations

import argparse
import json
from argparse import Namespace
from pathlib import Path


def extractor_with(base, model_dir: Path, spinning: str):
    """``base`` (an onnx-fp32 extractor) with its own session of the same graph under ``spinning``."""
    import dataclasses

    import onnxruntime as ort
    import torch

    from skilltrain.extraction.backends import onnx_graph, session_options
    from skilltrain.extraction.extractor import SkillExtractor, index_cache_dir
    from skilltrain.model import BiEncoder
    from skilltrain.ranking import model_fingerprint

    graph = onnx_graph(BiEncoder.from_pretrained(model_dir), index_cache_dir(model_dir), model_fingerprint(model_dir))
    session = ort.InferenceSession(str(graph), session_options(torch.get_num_threads(), spinning), providers=["CPUExecutionProvider"])
    return SkillExtractor(dataclasses.replace(base.encoder, session=session), base.index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--sentences", type=int, default=2000, help="synthetic sentences")
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args(argv)
    from bench_extract import build_extractors, interleaved_rates, load_avg, plain_sentence_transformers, unique_sentences
    from extract_table import benchmark_sentences

    from skilltrain.extraction.backends import SPINNING

    base = build_extractors(Namespace(model=args.model, device="cpu", batch_size=None, esco=None, skills_parquet=None), ["onnx-fp32"])["onnx-fp32"]
    extractors = {name: extractor_with(base, args.model, name) for name in SPINNING}
    st = plain_sentence_transformers(args.model, next(iter(extractors.values())).index.embeddings, "cpu")
    paths = {"sentence-transformers": st, **{name: (lambda s, e=e: e.extract_sentences(s)) for name, e in extractors.items()}}
    for path in paths.values():
        path(unique_sentences(64, seed=9))  # warm-up: first-call allocations and graph set-up
    result = {"load_avg": load_avg()}
    for corpus, sentences in (("synthetic", unique_sentences(args.sentences)), ("test", benchmark_sentences("test"))):
        rates = interleaved_rates(paths, sentences, args.rounds)["per_s"]
        result[corpus] = {name: {"sentences_per_s": round(r, 1), "ratio": round(r / rates["sentence-transformers"], 3)}
                          for name, r in rates.items()}
        print(corpus, json.dumps(result[corpus]), flush=True)
    if args.save is not None:
        args.save.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
