"""Does the main job write the same data twice? Its generation stage (cluster/configs/local.toml: 300 skills x 10
sentences, the built-in simulator, run seed 0) is run twice into two fresh run dirs, with 2 and then 1 worker,
and the sentence in every (skill_id, sample_idx) slot is compared.

    .venv/bin/python benchmarks/reproducible_mainjob.py /tmp/twice > benchmarks/results/reproducible_mainjob.json
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def generate(config, run_dir: Path, workers: int) -> dict:
    from cluster.pipeline import start_simulator
    from skillgen import run_generation

    with ExitStack() as stack:
        base_url = start_simulator(config, stack)
        gen = config.generation_config(base_url).model_copy(update={"run_dir": str(run_dir), "workers": workers})
        started = time.perf_counter()
        summary = run_generation(gen, progress=False)
    return {"status": summary.status, "requests": summary.requests, "truncated": summary.truncated,
            "s": round(time.perf_counter() - started, 1)}


def slots(run_dir: Path) -> dict[tuple[str, int], str]:
    from skillgen.rundir.sinks import read_rows

    rows = read_rows(run_dir).select("skill_id", "sample_idx", "sentence")
    return {(skill, int(idx)): sentence for skill, idx, sentence in rows.iter_rows()}


def main() -> None:
    from cluster.config import load_pipeline_config
    from skillgen.common.raycluster import init_ray

    root = Path(sys.argv[1])
    config = load_pipeline_config(ROOT / "cluster" / "configs" / "local.toml")
    init_ray(None)
    out = {name: generate(config, root / name, workers) for name, workers in (("a_workers2", 2), ("b_workers1", 1))}
    a, b = slots(root / "a_workers2"), slots(root / "b_workers1")
    out["slots"] = len(a)
    out["equal_slots"] = sum(a[k] == b.get(k) for k in a)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
