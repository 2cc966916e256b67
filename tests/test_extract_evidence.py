"""Evidence spans and the coverage-aware top-k (with window candidates) of token-attention extraction (issue 26).

Every extracted skill of a token-attention model carries spans of its own
sentence (character offsets, ``sentence[start:end] == text``), whatever the
script, over several sentences and windowed long ones, on every backend, and in
``skilltrain extract``'s JSON lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skilltrain import Evidence
from skilltrain.cli import main
from skilltrain.coverage import WINDOW, coverage_scores, diverse_order, window_candidates, window_starts
from skilltrain.evaluation.diversity import costs_nothing
from skilltrain.extraction.backends import onnxruntime_available
from skilltrain.extraction.evidence import sentence_evidence
from skilltrain.extraction.extractor import SkillExtractor
from skilltrain.model import BiEncoder
from skilltrain.packed import PackedQueries
from skilltrain.ranking import rank_tokens
from skilltrain.scoring import ScoringConfig, TokenQueries, token_attention_scores

TEXTS = [
    "Café crème brûlée for the naïve façade team – résumé writing and Python.\n• 日本語のテキストを読む and teach pastry 😀 daily",
    "Operate welding systems; manage payroll audits. Inspect forklift systems at the São Paulo site!",
    " ".join(f"word{i} kubernetes nursing" for i in range(40)),  # one long line: windowed into overlapping sentences
]


@pytest.fixture(scope="module")
def token_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evidence") / "model"
    BiEncoder.from_pretrained(tiny_encoder_dir, scoring=ScoringConfig("token_attention", 0.5, candidates=9)).save(out)
    return out


@pytest.mark.parametrize("backend", ["torch-fp32", "onnx-fp32"])
def test_every_skill_carries_spans_of_its_own_sentence(backend: str, token_dir: Path, esco_csv: Path, tmp_path: Path):
    if backend.startswith("onnx") and not onnxruntime_available():
        pytest.skip("onnxruntime not installed")
    extractor = SkillExtractor.from_pretrained(token_dir, esco_csv, backend=backend, device="cpu", cache_dir=tmp_path / "cache")
    results = extractor.extract(TEXTS, top_k=4) + extractor.extract(TEXTS, top_k=4, exhaustive=True, diverse=True)
    sentences = [s for r in results for s in r.sentences]
    assert len(sentences) > 2 * len(TEXTS)  # split into several sentences and windows
    for sentence in sentences:
        assert len(sentence.skills) == 4
        for match in sentence.skills:
            assert match.evidence, (sentence.sentence, match.label)
            assert [e.weight for e in match.evidence] == sorted((e.weight for e in match.evidence), reverse=True)
            for e in match.evidence:
                assert isinstance(e, Evidence) and 0 <= e.start < e.end <= len(sentence.sentence)
                assert sentence.sentence[e.start : e.end] == e.text and e.text.strip() == e.text
                assert 0 < e.weight <= 1
    # the offsets behind them: the attended tokens of a non-ASCII sentence, merged by word, are its words
    sentence = sentences[0].sentence
    queries = extractor.encoder.encode_queries([sentence])
    bounds: dict[int, list[int]] = {}
    for (start, end), word in zip(queries.spans.tolist(), queries.words.tolist()):
        bounds.setdefault(word, [start, end])[1] = end
    words = [sentence[a:b] for a, b in bounds.values()]
    assert {"Café", "crème", "brûlée", "naïve", "façade", "résumé", "–"} <= set(words)


def test_evidence_merges_word_pieces_and_neighbouring_words():
    sentence = "mentor junior developers daily"
    #            tokens: men ##tor | junior | develop ##ers | daily  (word numbers 0, 0, 1, 2, 2, 3)
    spans = np.array([[0, 3], [3, 6], [7, 13], [14, 21], [21, 24], [25, 30]])
    words = np.array([0, 0, 1, 2, 2, 3])
    weights = np.array([[0.25, 0.0], [0.2, 0.0], [0.3, 0.05], [0.0, 0.1], [0.0, 0.05], [0.25, 0.8]])
    first, second = sentence_evidence(sentence, spans, words, weights)
    assert [(e.text, e.weight) for e in first] == [("mentor junior", 0.75)]  # 0.45 + 0.3 hold half: neighbours merged
    assert [(e.start, e.end, e.text) for e in second] == [(25, 30, "daily")]


def test_jsonl_output_carries_the_evidence(token_dir: Path, esco_csv: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("SKILLGEN_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["extract", "--model", str(token_dir), "--esco", str(esco_csv), "--top-k", "3", TEXTS[1]]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert rows and all(len(r["evidence"]) == len(r["labels"]) == 3 for r in rows)
    for row in rows:
        for spans in row["evidence"]:
            assert spans and all(row["sentence"][e["start"] : e["end"]] == e["text"] for e in spans)
    assert main(argv + ["--diverse", "--exhaustive"]) == 0
    capsys.readouterr()


def test_diverse_needs_a_token_attention_model(tiny_encoder_dir: Path, esco_csv: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("SKILLGEN_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["extract", "--model", str(tiny_encoder_dir), "--esco", str(esco_csv), "--diverse", "welding"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--diverse" in err[0] and "token-attention" in err[0]


def test_coverage_scores_take_the_best_window():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([3, 9, 11])
    mask = torch.arange(11)[None, :] < lengths[:, None]
    queries = PackedQueries.from_padded(TokenQueries(torch.randn(3, 11, 16, generator=g) * mask.unsqueeze(-1), mask, 0.6))
    matrix = F.normalize(torch.randn(30, 16, generator=g), dim=-1)
    idx = torch.stack([torch.randperm(30, generator=g)[:6] for _ in range(3)])
    padded = queries.padded()
    sentence = torch.gather(token_attention_scores(padded.tokens, padded.mask, matrix, 0.6), 1, idx)
    got = coverage_scores(queries, matrix, idx, sentence)
    assert torch.allclose(got[0], sentence[0])  # no longer than a window: its own window
    for row in (1, 2):
        tokens = padded.tokens[row, : lengths[row]]
        windows = [token_attention_scores(tokens[s : s + WINDOW][None], torch.ones(1, WINDOW, dtype=torch.bool), matrix[idx[row]], 0.6)[0]
                   for s in window_starts(int(lengths[row])).tolist()]
        best = torch.maximum(torch.stack(windows).amax(0), sentence[row])
        assert torch.allclose(got[row], (sentence[row] + best) / 2, atol=1e-5)
    assert window_starts(11).tolist() == [0, 2, 4, 6, 7]


def test_diverse_order_skips_a_near_duplicate():
    matrix = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.99, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), dim=-1)
    idx = torch.tensor([[0, 1, 2, 3]])
    coverage = torch.tensor([[0.9, 0.85, 0.6, 0.3]])
    assert diverse_order(coverage, matrix, idx, 3, 0.0).tolist() == [[0, 1, 2]]  # strength 0: by coverage score
    assert diverse_order(coverage, matrix, idx, 3, 0.5).tolist() == [[0, 2, 1]]  # 1 is almost 0: after 2


def test_diverse_order_among_the_reachable_skills_equals_marginal_relevance_over_all():
    g = torch.Generator().manual_seed(3)
    matrix = F.normalize(torch.randn(50, 8, generator=g), dim=-1)
    idx = torch.stack([torch.randperm(50, generator=g)[:30] for _ in range(6)])
    coverage = torch.rand(6, 30, generator=g) * 0.5
    coverage[0, 3] = float("-inf")  # a repeated skill
    for strength in (0.0, 0.05, 0.3, 2.0):
        expected = []
        for row in range(6):  # the greedy choice written out over the whole pool
            sims = (matrix[idx[row]] @ matrix[idx[row]].T).clamp(min=0)
            picked: list[int] = []
            for _ in range(5):
                value = [float("-inf") if j in picked else float(coverage[row, j]) - strength * max([float(sims[j, p]) for p in picked] or [0.0])
                         for j in range(30)]
                picked.append(max(range(30), key=lambda j: value[j]))
            expected.append(picked)
        assert diverse_order(coverage, matrix, idx, 5, strength).tolist() == expected, strength


def test_window_candidates_are_each_windows_best_skills_by_its_mean_vector():
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([3, 9, 12])
    mask = torch.arange(12)[None, :] < lengths[:, None]
    queries = PackedQueries.from_padded(TokenQueries(torch.randn(3, 12, 16, generator=g) * mask.unsqueeze(-1), mask, 0.6))
    matrix = F.normalize(torch.randn(40, 16, generator=g), dim=-1)
    got = window_candidates(queries, matrix, per_window=3)
    padded = queries.padded().tokens
    assert got.shape == (3, 3 * len(window_starts(12, stride=WINDOW)))  # windows side by side: 0, 4, 8
    assert (got[0] == -1).all()  # no longer than a window: no window of its own
    for row in (1, 2):
        expected = [torch.topk(F.normalize(padded[row, s : s + WINDOW].mean(0), dim=0) @ matrix.T, 3).indices
                    for s in window_starts(int(lengths[row]), stride=WINDOW).tolist()]
        width = 3 * len(expected)
        assert got[row, :width].tolist() == torch.cat(expected).tolist() and (got[row, width:] == -1).all()


def test_diverse_top_k_reaches_a_skill_only_a_window_asks_for():
    """The pooled vector leaves skill 5 out of the two candidates; the window on its four tokens brings it in."""
    g = torch.Generator().manual_seed(2)
    matrix = torch.cat([torch.eye(8), F.normalize(torch.randn(12, 8, generator=g), dim=-1)])
    tokens = torch.zeros(1, 12, 8)
    tokens[0, [0, 1, 2, 3, 8, 9, 10, 11], 0] = 3.0  # most of the sentence is about skill 0 ...
    tokens[0, 4:8, 5] = 0.5  # ... four words (the window starting at token 4) about skill 5
    tokens[0, [1, 3, 9], 1] = 1.0
    mask = torch.ones(1, 12, dtype=torch.bool)
    pooled = F.normalize(torch.tensor([[1.0, 0.5, 0, 0, 0, 0, 0, 0]]), dim=-1)
    queries = PackedQueries.from_padded(TokenQueries(tokens, mask, 1.0), pooled=pooled)
    plain = rank_tokens(queries, matrix, 3, candidates=2)
    diverse = rank_tokens(queries, matrix, 3, candidates=2, diversity=0.0)
    assert 5 not in plain.idx[0].tolist()
    assert 5 in diverse.idx[0].tolist()
    assert len(set(diverse.idx[0].tolist())) == 3  # a skill found by the pooled vector and by a window is taken once


def test_the_coverage_default_must_cost_nothing_on_each_set():
    plain = {"tech": {"RP@5": 68.7, "RP@10": 76.2}, "house": {"RP@5": 57.8, "RP@10": 65.2}}
    better_mean_worse_tech = {"tech": {"RP@5": 67.4, "RP@10": 75.9}, "house": {"RP@5": 59.5, "RP@10": 65.8}}
    no_worse = {"tech": {"RP@5": 68.7, "RP@10": 76.3}, "house": {"RP@5": 57.9, "RP@10": 65.2}}
    assert not costs_nothing(better_mean_worse_tech, plain, ["tech", "house"])
    assert costs_nothing(no_worse, plain, ["tech", "house"])


def test_a_diversity_strength_is_checked_and_needs_a_token_attention_model(token_dir: Path, tiny_encoder_dir: Path,
                                                                          esco_csv: Path, monkeypatch, capsys):
    scoring = ScoringConfig.load(token_dir)
    assert scoring.diversity_strength(0.0) == 0.0 and scoring.diversity_strength(0.3) == 0.3  # a number: on, at it
    assert scoring.diversity_strength(True) == scoring.diversity and scoring.diversity_strength(False) is None
    assert ScoringConfig().diversity_strength(0.3) is None  # pooled: plain top-k
    with pytest.raises(ValueError, match="diversity strength"):
        scoring.diversity_strength(-0.1)
    monkeypatch.chdir(token_dir.parent)
    for argv, flag in ([["--model", str(token_dir), "--diversity", "-1"], "--diversity"],
                       [["--model", str(token_dir), "--diversity", "0.3", "--no-diverse"], "--no-diverse"],
                       [["--model", str(tiny_encoder_dir), "--diversity", "0.3"], "token-attention"]):
        assert main(["extract", "--esco", str(esco_csv), *argv, "welding"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0], err
