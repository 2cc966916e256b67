"""Padding-free token-attention scoring and two-stage ranking (issue 26).

The kernels are held to the padded reference (``token_attention_scores``, the
training loss's) to 1e-5; two-stage ranking equals exhaustive ranking when its
candidates hold every skill, and whenever the exhaustive top k lies inside the
pooled candidates; the candidate count C a model carries is what extraction,
``skilltrain eval`` and the Ray Data actors rank with.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F

from conftest import write_benchmarks
from skillgen.common.errors import UserError
from skillgen.common.taxonomy import load_skills
from skilltrain import kernels
from skilltrain.cli import main
from skilltrain.evaluation.candidates import CurvePoint, smallest_passing
from skilltrain.evaluation.evaluate import load_benchmarks, ranking_scores
from skilltrain.evaluation.metrics import top_k_indices
from skilltrain.extraction.bulk import ExtractActor
from skilltrain.extraction.documents import Document, documents_table
from skilltrain.extraction.extractor import SkillExtractor
from skilltrain.extraction.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP
from skilltrain.kernels import candidate_scores, exhaustive_scores
from skilltrain.model import BiEncoder
from skilltrain.packed import PackedQueries
from skilltrain.ranking import SkillIndex, pooled_candidates, pooled_scores, top_k, top_k_chunked, two_stage_top_k
from skilltrain.scoring import SCORING_FILE, ScoringConfig, TokenQueries, token_attention_scores


def random_queries(n: int = 40, max_len: int = 13, dim: int = 24, seed: int = 0, norm: float = 1.0) -> PackedQueries:
    """Padded random token queries of mixed lengths, packed; each row's pooled vector is the mean of its tokens."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (n,), generator=g)
    mask = torch.arange(max_len)[None, :] < lengths[:, None]
    tokens = torch.randn(n, max_len, dim, generator=g) * norm * mask.unsqueeze(-1)
    pooled = F.normalize(tokens.sum(1), dim=-1)
    return PackedQueries.from_padded(TokenQueries(tokens, mask, 0.7), pooled)


def unit_rows(n: int, dim: int = 24, seed: int = 1) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize("norm", [1.0, 40.0])  # 40: exponents past float32's range, the shifted path
def test_padding_free_scoring_equals_the_padded_reference(norm: float, monkeypatch):
    queries, matrix = random_queries(norm=norm), unit_rows(300)
    padded = queries.padded()
    reference = token_attention_scores(padded.tokens, padded.mask, matrix, queries.temperature)
    assert torch.allclose(exhaustive_scores(queries, matrix), reference, atol=1e-5, rtol=1e-5)
    monkeypatch.setattr(kernels, "BLOCK_ROWS", 7)  # many blocks of whole sentences, several lengths per block
    monkeypatch.setattr(kernels, "MIN_BLOCK_COLS", 16)
    assert torch.allclose(exhaustive_scores(queries, matrix, block_bytes=4 * 7 * 50), reference, atol=1e-5, rtol=1e-5)
    candidates = torch.stack([torch.randperm(300, generator=torch.Generator().manual_seed(i))[:17] for i in range(len(queries))])
    expected = torch.gather(reference, 1, candidates)
    assert torch.allclose(candidate_scores(queries, matrix, candidates), expected, atol=1e-5, rtol=1e-5)


def test_packed_rows_and_padded_round_trip():
    queries = random_queries(n=9)
    picked = queries[torch.tensor([4, 0, 4])]
    assert picked.lengths.tolist() == [queries.lengths[4], queries.lengths[0], queries.lengths[4]]
    again = queries.padded()
    assert torch.equal(PackedQueries.from_padded(again).tokens, queries.tokens)
    assert torch.equal(picked.padded().tokens[1, : queries.lengths[0]], again.tokens[0, : queries.lengths[0]])


def test_two_stage_equals_exhaustive_when_the_candidates_hold_every_skill():
    queries, matrix = random_queries(), unit_rows(60)
    exhaustive = top_k_chunked(queries, matrix, 10)
    for ranked in (two_stage_top_k(queries, matrix, 10, candidates=60), top_k(queries, matrix, 10, candidates=500)):
        assert torch.equal(ranked[0], exhaustive[0])
        assert torch.allclose(ranked[1], exhaustive[1], atol=1e-5)


def test_two_stage_top_k_equals_exhaustive_when_the_gold_is_inside_the_candidates():
    queries, matrix = random_queries(n=30, seed=3), unit_rows(400, seed=4)
    exhaustive_idx, exhaustive_scores_ = top_k_chunked(queries, matrix, 5)
    pooled_rank = torch.argsort(torch.argsort(pooled_scores(queries, matrix), dim=1, descending=True), dim=1)
    needed = int(torch.gather(pooled_rank, 1, exhaustive_idx).max()) + 1  # the smallest C holding every exhaustive top 5
    assert needed < 400
    idx, scores = two_stage_top_k(queries, matrix, 5, candidates=needed)
    assert torch.equal(idx, exhaustive_idx) and torch.allclose(scores, exhaustive_scores_, atol=1e-5)
    assert set(pooled_candidates(pooled_scores(queries, matrix), needed)[0].tolist()) >= set(exhaustive_idx[0].tolist())
    fewer, _ = two_stage_top_k(queries, matrix, 5, candidates=5)  # too few candidates: another ranking
    assert not torch.equal(fewer, exhaustive_idx)


def test_two_stage_score_matrix_ranks_candidates_first():
    queries, matrix = random_queries(n=12, seed=5), unit_rows(80, seed=6)
    index = SkillIndex(pl.DataFrame({"skill_id": [str(i) for i in range(80)], "label": [f"s{i}" for i in range(80)]}), matrix.numpy())
    scores = index.scores(queries, candidates=9)
    idx, values = two_stage_top_k(queries, matrix, 9, candidates=9)
    assert (top_k_indices(scores, 9) == idx.numpy()).all()
    assert np.allclose(np.take_along_axis(scores, idx.numpy(), axis=1), values.numpy(), atol=1e-6)
    assert np.allclose(index.scores(queries), exhaustive_scores(queries, matrix).numpy(), atol=1e-6)


def test_the_smallest_c_from_which_on_every_c_passes_is_chosen():
    def point(c, tech5, tech10=70.0):
        return CurvePoint(c, {"tech": {"RP@5": tech5, "RP@10": tech10}, "house": {"RP@5": 50.0, "RP@10": 60.0}})

    exhaustive = point(None, 60.0)
    assert smallest_passing([exhaustive, point(8, 55.0), point(16, 59.95), point(32, 60.0)]) == 16
    assert smallest_passing([exhaustive, point(8, 60.0), point(16, 59.0), point(32, 61.0)]) == 32  # a dip at 16
    assert smallest_passing([exhaustive, point(8, 60.0, tech10=69.0), point(16, 60.5, tech10=69.95)]) == 16
    assert smallest_passing([exhaustive, point(8, 50.0), point(16, 59.0)]) is None


def test_scoring_config_reads_old_files_and_checks_candidates(tmp_path: Path):
    (tmp_path / SCORING_FILE).write_text(json.dumps({"scoring": "token_attention", "attention_temperature": 3.0,
                                                      "exclude_special_tokens": True}))
    old = ScoringConfig.load(tmp_path)
    assert old.candidates is None and not old.diverse and old.ranking_candidates() is None
    assert ScoringConfig("token_attention", candidates=0).candidates is None
    assert ScoringConfig("token_attention", candidates=64).ranking_candidates(exhaustive=True) is None
    assert ScoringConfig("pooled", candidates=64).ranking_candidates() is None  # pooled: one matmul over every skill
    for bad in (-1, 2.5, True):
        (tmp_path / SCORING_FILE).write_text(json.dumps({"scoring": "token_attention", "candidates": bad}))
        with pytest.raises(UserError, match="candidates"):
            ScoringConfig.load(tmp_path)


@pytest.fixture(scope="module")
def two_stage_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("two_stage") / "model"
    BiEncoder.from_pretrained(tiny_encoder_dir, scoring=ScoringConfig("token_attention", 0.5, candidates=7)).save(out)
    return out


def test_the_saved_c_is_what_extraction_eval_and_the_batch_path_rank_with(two_stage_dir: Path, esco_csv: Path, tmp_path: Path, capsys):
    assert json.loads((two_stage_dir / SCORING_FILE).read_text())["candidates"] == 7
    skills = load_skills(esco_csv)
    labels = skills["label"].to_list()
    sentences = [f"we need someone to {label}, and to {labels[(i + 9) % len(labels)]}" for i, label in enumerate(labels)]
    extractor = SkillExtractor.from_pretrained(two_stage_dir, esco_csv, backend="torch-fp32", device="cpu", cache_dir=tmp_path / "c")
    assert extractor.scoring.candidates == 7
    queries = extractor.encoder.encode_queries(sentences)
    expected_idx, _ = two_stage_top_k(queries, extractor._matrix, 5, candidates=7)
    exhaustive_idx, _ = top_k_chunked(queries, extractor._matrix, 5)
    served, _ = extractor.rank(sentences, top_k=5)
    assert (served == expected_idx.numpy()).all() and not (served == exhaustive_idx.numpy()).all()
    assert (extractor.rank(sentences, top_k=5, exhaustive=True)[0] == exhaustive_idx.numpy()).all()

    # skilltrain eval: the same two-stage ranking by default, exhaustive on request
    bench = write_benchmarks(tmp_path / "bench", labels)
    model = BiEncoder.from_pretrained(two_stage_dir).eval()
    index = SkillIndex(skills, extractor.index.embeddings)
    [tech] = load_benchmarks(skills, ["tech"], "test", bench)
    encoded = model.encode_queries([s.sentence for s in tech.sentences])
    gold = np.array([labels.index(s.gold_labels[0]) for s in tech.sentences])
    for flag, scores in (([], ranking_scores(index, encoded, model.scoring)),
                         (["--exhaustive"], ranking_scores(index, encoded, model.scoring, exhaustive=True))):
        out = tmp_path / f"eval{len(flag)}.json"
        argv = ["eval", "--model", str(two_stage_dir), "--esco", str(esco_csv), "--benchmark-dir", str(bench), "--sets", "tech",
                "--out", str(out)]
        assert main(argv + flag) == 0
        expected = 100 * np.mean([g in row for g, row in zip(gold, top_k_indices(scores, 5))])
        assert json.loads(out.read_text())["tech"]["RP@5"] == pytest.approx(expected, abs=0.01)
    assert "two-stage C=7" in capsys.readouterr().out

    # the Ray Data actor (constructed in process): the model dir's C, the same rows as single-process extraction
    payload = {"skill_ids": skills["skill_id"].to_list(), "labels": labels, "embeddings": extractor.index.embeddings}
    options = {"threads": 1, "max_seq_length": None, "backend": "torch-fp32", "batch_size": None,
               "max_words": DEFAULT_MAX_WORDS, "overlap": DEFAULT_OVERLAP,
               "text_field": "text", "id_field": "id", "top_k": 5, "min_score": None, "split": True, "exhaustive": None, "diverse": None}
    actor = ExtractActor(str(two_stage_dir), [payload], options)
    assert actor.extractor.scoring.candidates == 7
    rows = actor(pa.table({"id": list(range(len(sentences))), "text": sentences}))
    single = documents_table(extractor, [Document(str(i), s) for i, s in enumerate(sentences)], top_k=5)
    assert rows.column("labels").to_pylist() == single.column("labels").to_pylist()


def test_slices_of_packed_queries_are_their_rows():
    queries = random_queries(n=11, seed=7)
    for rows in (slice(2, 7), slice(0, 11), slice(9, 40), slice(5, 3), slice(1, 10, 3)):
        picked, reference = queries[rows], queries[torch.arange(11)[rows]]
        assert torch.equal(picked.lengths, reference.lengths) and torch.equal(picked.tokens, reference.tokens)
        assert torch.equal(picked.pooled, reference.pooled)
