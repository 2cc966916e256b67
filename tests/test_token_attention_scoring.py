"""A saved token-attention model says so, and eval, ranking and extraction score with it.

Ranking is chunked (queries x tokens x skills is the big intermediate): chunked
top-k and chunked score matrices equal the unchunked ones. Pooled models load
and rank exactly as before.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from conftest import synthetic_skill_rows, write_benchmarks
from skillgen.common.errors import UserError
from skillgen.common.taxonomy import load_skills
from skilltrain import kernels
from skilltrain.evaluation.evaluate import evaluate, load_benchmarks
from skilltrain.evaluation.metrics import top_k_indices
from skilltrain.evaluation.temperature import choose_temperature
from skilltrain.extraction.backends import onnxruntime_available
from skilltrain.extraction.extractor import SkillExtractor
from skilltrain.model import BiEncoder
from skilltrain.ranking import SkillIndex, top_k_chunked
from skilltrain.scoring import SCORING_FILE, ScoringConfig, TokenQueries, token_attention_scores

TOKEN = ScoringConfig("token_attention", attention_temperature=0.5)


@pytest.fixture(scope="module")
def token_model_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("token") / "model"
    BiEncoder.from_pretrained(tiny_encoder_dir, scoring=TOKEN).save(out)
    return out


def test_saved_model_says_its_scoring(token_model_dir: Path, tiny_encoder_dir: Path, tmp_path: Path):
    assert BiEncoder.from_pretrained(token_model_dir).scoring == TOKEN
    plain = tmp_path / "plain"
    shutil.copytree(tiny_encoder_dir, plain)
    (plain / SCORING_FILE).unlink(missing_ok=True)  # any sentence-transformers dir: pooled
    assert BiEncoder.from_pretrained(plain).scoring == ScoringConfig()
    (plain / SCORING_FILE).write_text('{"scoring": "colbert"}')
    with pytest.raises(UserError, match=SCORING_FILE):
        BiEncoder.from_pretrained(plain)


def test_special_tokens_are_not_attended_and_padding_is_zero(token_model_dir: Path):
    model = BiEncoder.from_pretrained(token_model_dir).eval()
    queries = model.encode_queries(["welding", "payroll audits for a large firm", ""]).padded()  # packed: attended tokens only
    assert queries.temperature == 0.5
    assert queries.mask.sum(1).tolist()[:2] == [len(model.tokenizer.tokenize(t)) for t in ("welding", "payroll audits for a large firm")]
    assert queries.mask[2].sum() == 2  # an empty text keeps [CLS] [SEP] (no row without tokens)
    assert (queries.tokens[~queries.mask] == 0).all()
    # row order is the input order, whatever the length sort did
    alone = model.encode_queries(["welding"]).padded()
    assert torch.allclose(alone.tokens[0, :1], queries.tokens[0, :1], atol=1e-5)  # "welding": one attended token


def test_chunked_ranking_equals_unchunked(monkeypatch):
    torch.manual_seed(0)
    n, length, dim, n_skills = 23, 9, 16, 300
    lengths = torch.randint(1, length + 1, (n,))
    mask = torch.arange(length)[None, :] < lengths[:, None]
    queries = TokenQueries(torch.randn(n, length, dim) * mask.unsqueeze(-1), mask, 0.7)
    matrix = F.normalize(torch.randn(n_skills, dim), dim=-1)
    matrix[11] = matrix[5]  # an exact tie, resolved to the lower index
    full = token_attention_scores(queries.tokens, queries.mask, matrix, 0.7).numpy()
    monkeypatch.setattr(kernels, "BLOCK_ROWS", 3 * length)  # about 3 queries per GEMM block
    for k in (1, 5, 40):
        idx, scores = top_k_chunked(queries, matrix, k)
        assert (idx.numpy() == top_k_indices(full, k)).all()
        assert np.allclose(scores.numpy(), np.take_along_axis(full, idx.numpy(), axis=1), atol=1e-6)
    skills = pl.DataFrame({"skill_id": [str(i) for i in range(n_skills)], "label": [f"s{i}" for i in range(n_skills)]})
    index = SkillIndex(skills, matrix.numpy())
    assert np.allclose(index.scores(queries), full, atol=1e-6)


def test_eval_and_extraction_score_with_token_attention(token_model_dir: Path, tmp_path: Path):
    rows = synthetic_skill_rows(40)
    esco = tmp_path / "skills.csv"
    from conftest import write_esco_csv

    write_esco_csv(esco, rows)
    skills = load_skills(esco)
    labels = skills["label"].to_list()
    bench = write_benchmarks(tmp_path / "bench", labels)
    model = BiEncoder.from_pretrained(token_model_dir).eval()  # the manual scores below must see no dropout
    index = SkillIndex.build(model, skills)
    sentences = [f"we need someone to {lab}" for lab in labels]
    manual = token_attention_scores(*_tokens_of(model, sentences), torch.from_numpy(index.embeddings), 0.5).numpy()

    [report] = evaluate(model, skills, load_benchmarks(skills, ["tech"], "validation", bench), ci=False).values()
    gold = np.arange(len(labels))
    expected = np.mean([float(g in row) for g, row in zip(gold, top_k_indices(manual, 5))]) * 100
    assert report.means()["RP@5"] == pytest.approx(expected)

    pooled = BiEncoder.from_pretrained(token_model_dir, scoring=ScoringConfig())
    [pooled_report] = evaluate(pooled, skills, load_benchmarks(skills, ["tech"], "validation", bench), ci=False).values()
    assert pooled_report.per_sentence["MRR"].tolist() != report.per_sentence["MRR"].tolist()  # another scoring

    backends = ["torch-fp32"] + (["onnx-fp32"] if onnxruntime_available() else [])
    for backend in backends:
        extractor = SkillExtractor.from_pretrained(token_model_dir, esco, backend=backend, device="cpu", cache_dir=tmp_path / "cache")
        assert extractor.encoder.scoring == TOKEN
        idx, scores = extractor.rank(sentences + sentences[:3], top_k=5)
        assert (idx[:len(labels)] == top_k_indices(manual, 5)).mean() > 0.95, backend
        assert np.allclose(scores[:len(labels)], np.take_along_axis(manual, idx[:len(labels)], axis=1), atol=1e-4)
        assert (idx[len(labels):] == idx[:3]).all()
        [text] = extractor.extract([sentences[0]], top_k=3)
        assert [m.label for m in text.sentences[0].skills] == [labels[i] for i in idx[0, :3]]


def test_temperature_is_chosen_on_validation(token_model_dir: Path, tmp_path: Path, esco_csv: Path):
    skills = load_skills(esco_csv)
    bench = write_benchmarks(tmp_path / "bench", skills["label"].to_list())
    model = BiEncoder.from_pretrained(token_model_dir)
    best, scores = choose_temperature(model, skills, load_benchmarks(skills, ["tech", "house"], "validation", bench), [0.05, 50.0])
    assert set(scores) == {0.05, 0.5, 50.0}
    assert scores[best] == max(scores.values()) and model.scoring.attention_temperature == best

    # a given index (the one the workers saved with the checkpoint) is used, not encoded again
    benchmarks = load_benchmarks(skills, ["tech", "house"], "validation", bench)
    model.scoring = replace(model.scoring, attention_temperature=0.5)
    built = SkillIndex.build(model, skills)
    _, same = choose_temperature(model, skills, benchmarks, [0.05, 50.0], index=SkillIndex(skills, built.embeddings.copy()))
    assert same == scores
    model.scoring = replace(model.scoring, attention_temperature=0.5)
    shuffled = SkillIndex(skills, np.random.default_rng(0).permutation(built.embeddings))
    _, other = choose_temperature(model, skills, benchmarks, [0.05, 50.0], index=shuffled)
    assert other != scores


def _tokens_of(model: BiEncoder, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        features = model.tokenize(sentences)
        hidden = model.transformer(**features).last_hidden_state
    return hidden, model.attended(features["input_ids"], features["attention_mask"])
