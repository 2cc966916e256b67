"""Quality benchmark: simulator sentences for every ESCO skill -> paper-recipe training -> TECH/HOUSE test.

    .venv/bin/python benchmarks/bench_quality.py --gen-dir runs/bench-esco-full --out runs/bench-quality \
        --taxonomy-pairs --max-steps 1200 --workers 2

Generation (13,896 skills x 10 sentences) runs against the in-process simulator when the
generation dir is not complete yet, and resumes otherwise. Training uses the paper's recipe
(MNRL scale 20, global batch 64, AdamW 2e-5, 5% warm-up, augmentation with a random sentence
of another skill); ``--max-steps`` bounds it on a CPU. The result JSON (``<out>/quality.json``)
holds the test scores, the zero-shot scores of the start model and the wall times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gen-dir", type=Path, default=Path("runs/bench-esco-full"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-quality"))
    parser.add_argument("--sentences", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="per worker")
    parser.add_argument("--max-steps", type=int, default=0, help="0 = one full epoch")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--taxonomy-pairs", action="store_true")
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--scoring", choices=["pooled", "token_attention"], default="pooled")
    parser.add_argument("--saved-scoring", choices=["pooled", "token_attention"], default=None)
    parser.add_argument("--attention-temperatures", default="", help="e.g. 1,2,3,5: chosen on validation after training")
    args = parser.parse_args()

    from skillgen.config import make_config
    from skillgen.common.raycluster import init_ray
    from skillgen import run_generation
    from skillgen.simulator import run_in_thread
    from skillgen.common.taxonomy import load_skills
    from skilltrain.config import TrainConfig
    from skilltrain.evaluation.evaluate import evaluate, load_benchmarks, results_json
    from skilltrain.training.fit import fit
    from skilltrain.model import BiEncoder

    init_ray(None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with run_in_thread(latency="lognormal:-1.6,0.4") as sim:
        summary = run_generation(make_config({"base_url": sim.base_url, "model": "simulator", "run_dir": str(args.gen_dir),
                                              "n_sentences": args.sentences, "workers": 2}), progress=False)
    timings["generation_s"] = round(time.perf_counter() - t0, 1)
    assert summary.status == "complete", summary.status

    config = TrainConfig(
        data=args.gen_dir, out=args.out / "model", workers=args.workers, batch_size=args.batch_size,
        taxonomy_pairs=args.taxonomy_pairs, max_steps=args.max_steps, max_seq_length=args.max_seq_length,
        eval_every=args.eval_every, storage_path=args.out / "train", name="quality",
        scoring=args.scoring, saved_scoring=args.saved_scoring,
        attention_temperatures=[float(t) for t in args.attention_temperatures.split(",") if t.strip()],
    )
    t0 = time.perf_counter()
    result = fit(config)
    timings["training_s"] = round(time.perf_counter() - t0, 1)

    skills = load_skills(None)
    zero_shot = results_json(evaluate(BiEncoder.from_pretrained(None), skills, load_benchmarks(skills, split="test")))
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "pairs": result.extra.get("pairs"), "steps": result.extra.get("total_steps"),
        "best_step": result.best_step, "best_val": result.best_metrics,
        "test": result.test_results, "zero_shot_test": zero_shot, **timings,
    }
    (args.out / "quality.json").write_text(json.dumps(record, indent=2, default=str))
    for name in ("tech", "house"):
        t, z = result.test_results[name], zero_shot[name]
        print(f"{name.upper()}: RP@5 {t['RP@5']:.1f} (zero-shot {z['RP@5']:.1f}), MRR {t['MRR']:.1f} (zero-shot {z['MRR']:.1f})")
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
