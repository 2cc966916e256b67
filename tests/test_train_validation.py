"""Validation with the label encoding shared by 2 ranks scores exactly what ``skilltrain eval`` scores."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers.ports import free_port

from skilltrain.model import BiEncoder


def _inputs():
    from skillgen.common.taxonomy import load_skills
    from skilltrain.evaluation.evaluate import load_benchmarks
    from skilltrain.training.train import TrainData

    everything = load_skills(None)
    gold = {g for b in load_benchmarks(everything, ["tech", "house"], "validation") for s in b.sentences for g in s.gold_labels}
    # every gold skill plus others up to 1,500: six label batches of 256, shared unevenly by 2 ranks
    skills = everything.filter(everything["label"].is_in(sorted(gold)) | (everything["label"].rank("ordinal") <= 1500))
    skills = skills.head(max(1500, len(gold)))
    benchmarks = load_benchmarks(skills, ["tech", "house"], "validation")
    return TrainData([], [], np.zeros(0), np.zeros(0), val_skills=skills, val_benchmarks=benchmarks)


def _rank(rank: int, world: int, port: int, model_dir: str, out_dir: str) -> None:
    from skilltrain.training.train import validate
    from skilltrain.training.validation import validation_index

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        data = _inputs()
        encoder = BiEncoder.from_pretrained(model_dir).train()  # mid-training state: encode switches dropout off
        index = validation_index(encoder, data.val_skills)
        if rank == 0:
            torch.save({"scores": validate(encoder, data, index), "embeddings": index.embeddings}, Path(out_dir) / "val.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~12 s: two evaluations of all 13,896 labels; .ci/run runs it (the default suite stays under 6 min)
def test_shared_validation_equals_skilltrain_eval(tiny_encoder_dir, tmp_path):
    from skilltrain.evaluation.evaluate import evaluate
    from skilltrain.ranking import SkillIndex

    mp.spawn(_rank, args=(2, free_port(), str(tiny_encoder_dir), str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "val.pt", weights_only=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = _inputs()
        encoder = BiEncoder.from_pretrained(tiny_encoder_dir)
        reports = evaluate(encoder, data.val_skills, data.val_benchmarks, ci=False)  # what `skilltrain eval` runs
        reference = SkillIndex.build(encoder, data.val_skills).embeddings
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(got["embeddings"], reference)
    for name, report in reports.items():
        assert got["scores"][f"val_{name}_rp5"] == report.means()["RP@5"]
