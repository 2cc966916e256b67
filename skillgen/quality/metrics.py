"""The measurements behind the data-quality report, each a function of the rows frame.

Why these: a contrastive skill encoder learns whatever separates one skill's sentences
from the others'. Sentences that contain the skill's label verbatim teach it string
matching (the lexical shortcut) rather than meaning; sentences that are the label and
nothing else teach nothing a job ad looks like; duplicates waste the batch's negatives
and templates shared across skills (the same sentence once the label is masked) carry no
skill-specific signal at all. Distinct n-grams measure how much vocabulary the data offers.

Everything is vectorised in Polars except the within-skill near-duplicate pairs, which are
few per skill (n*(n-1)/2 Jaccard comparisons of word sets); 140,000 rows take seconds.
"""

from __future__ import annotations

import re
from collections import defaultdict
from itertools import combinations
from typing import Any

import polars as pl

from skillgen.llm.validate import DROP_REASONS

__all__ = ["NEAR_DUP_JACCARD", "distinct_ngrams", "duplicates", "failures_by_reason", "lengths",
           "near_duplicates_within_skill", "normalised", "per_skill_counts", "samples_by_type", "with_keys"]

NEAR_DUP_JACCARD = 0.8  # word-set Jaccard at or above which two sentences of a skill count as near-duplicates
_NON_WORD = r"[^\p{L}\p{N}]+"


def normalised(col: str) -> pl.Expr:
    """Lower-case words joined by single spaces (the validator's duplicate key, in Polars)."""
    return pl.col(col).str.to_lowercase().str.replace_all(_NON_WORD, " ").str.strip_chars()


def with_keys(rows: pl.DataFrame) -> pl.DataFrame:
    """Adds ``key`` (normalised sentence), ``label_key``, ``words`` and the label flags."""
    frame = rows.select("skill_id", "label", "sentence").with_columns(
        key=normalised("sentence"), label_key=normalised("label"),
        # an unfilled template slot, "[industry_specific]" (the validator drops these since issue 21)
        placeholder=pl.col("sentence").str.contains(r"\[[^\[\]]{1,60}\]"))
    return frame.with_columns(
        words=pl.col("key").str.split(" ").list.len(),
        # padded with spaces so "java" does not match inside "javascript"
        has_label=(pl.lit(" ") + pl.col("key") + pl.lit(" ")).str.contains(
            pl.lit(" ") + pl.col("label_key") + pl.lit(" "), literal=True),
        label_only=pl.col("key") == pl.col("label_key"),
        # the sentence with its label masked: equal masks in two skills = one template filled with two labels
        masked=(pl.lit(" ") + pl.col("key") + pl.lit(" ")).str.split(pl.lit(" ") + pl.col("label_key") + pl.lit(" "))
        .list.join(" <label> ").str.replace_all(" +", " ").str.strip_chars(),
    )


def per_skill_counts(rows: pl.DataFrame, n: int | None) -> dict[str, Any]:
    counts = rows.group_by("skill_id").len()["len"] if rows.height else pl.Series("len", [], pl.UInt32)
    out: dict[str, Any] = {"skills_with_rows": counts.len()}
    if counts.len():
        out.update(min=int(counts.min()), median=float(counts.median()), max=int(counts.max()))
    if n is not None:
        out["skills_short_of_n"] = int((counts < n).sum())
        out["histogram"] = {int(k): int(v) for k, v in counts.value_counts().sort("len").iter_rows()}
    return out


def duplicates(keyed: pl.DataFrame) -> dict[str, float | int]:
    """Exact duplicates (same normalised sentence) within a skill and across skills, and label-masked templates."""
    total = keyed.height
    if not total:
        return {"within_skill": 0, "across_skills": 0, "template_across_skills": 0}
    within = total - keyed.select(pl.struct("skill_id", "key").n_unique()).item()
    skills_per_key = keyed.group_by("key").agg(pl.col("skill_id").n_unique().alias("k"))
    across = keyed.join(skills_per_key.filter(pl.col("k") > 1), on="key", how="semi").height
    skills_per_mask = keyed.group_by("masked").agg(pl.col("skill_id").n_unique().alias("k"))
    templated = keyed.join(skills_per_mask.filter(pl.col("k") > 1), on="masked", how="semi").height
    return {"within_skill": within, "across_skills": across, "template_across_skills": templated}


def near_duplicates_within_skill(keyed: pl.DataFrame, threshold: float = NEAR_DUP_JACCARD) -> int:
    """Sentences that have an earlier sentence of the same skill with word-set Jaccard >= ``threshold``
    (exact duplicates included)."""
    by_skill: dict[str, list[frozenset[str]]] = defaultdict(list)
    for skill_id, key in keyed.select("skill_id", "key").iter_rows():
        by_skill[skill_id].append(frozenset(key.split()))
    near = 0
    for sets in by_skill.values():
        flagged = set()
        for i, j in combinations(range(len(sets)), 2):
            if j in flagged:
                continue
            a, b = sets[i], sets[j]
            if min(len(a), len(b)) < threshold * max(len(a), len(b)):
                continue  # Jaccard <= min/max: sizes this far apart cannot reach the threshold
            union = len(a | b)
            if union and len(a & b) / union >= threshold:
                flagged.add(j)
        near += len(flagged)
    return near


def lengths(keyed: pl.DataFrame) -> dict[str, Any]:
    if not keyed.height:
        return {}
    words = keyed["words"]
    q = {f"p{p}": float(words.quantile(p / 100, "nearest")) for p in (5, 50, 95)}
    return {"mean_words": round(float(words.mean()), 2), **q, "min": int(words.min()), "max": int(words.max()),
            "mean_chars": round(float(keyed["sentence"].str.len_chars().mean()), 1)}


def distinct_ngrams(keyed: pl.DataFrame, orders: tuple[int, ...] = (1, 2, 3)) -> dict[str, float]:
    """distinct-n: unique n-grams / all n-grams over the corpus (Li et al. 2016), and the unique count."""
    if not keyed.height:
        return {}
    tokens = (keyed.select(pl.int_range(pl.len()).alias("sid"), pl.col("key").str.split(" ").alias("w"))
              .explode("w").filter(pl.col("w") != ""))
    out: dict[str, float] = {}
    for n in orders:
        # one shifted column per position; a gram that would run into the next sentence is dropped
        gram = pl.concat_str([pl.col("w").shift(-i) for i in range(n)], separator=" ")
        same_sentence = pl.col("sid").shift(-(n - 1)) == pl.col("sid")
        grams = tokens.select(gram.alias("g"), same_sentence.alias("keep")).filter(pl.col("keep"))["g"]
        out[f"distinct_{n}"] = round(grams.n_unique() / max(grams.len(), 1), 4)
        out[f"unique_{n}grams"] = grams.n_unique()
    return out


# what a validation failure's message names (skillgen.llm.validate: parse problems, then "<n> <reason>" drops)
_PROBLEM = re.compile(r"empty response|JSON without a list of sentences|truncated JSON|malformed JSON|not JSON|"
                      r"\btruncated\b(?! JSON)|\d+ (" + "|".join(map(re.escape, DROP_REASONS)) + r")\b")


def failures_by_reason(failures: pl.DataFrame) -> dict[str, Any]:
    """Failure records by class, and validation failures by the problems their message names
    (a record counts once per problem it mentions)."""
    if not failures.height:
        return {"by_class": {}, "validation_problems": {}}
    by_class = {k: int(v) for k, v in failures.group_by("error_class").len().sort("len", descending=True).iter_rows()}
    problems: dict[str, int] = defaultdict(int)
    for message in failures.filter(pl.col("error_class") == "validation")["message"].to_list():
        for name in {m.group(1) or m.group(0) for m in _PROBLEM.finditer(message or "")}:
            problems[name] += 1
    return {"by_class": by_class, "validation_problems": dict(sorted(problems.items(), key=lambda kv: (-kv[1], kv[0])))}


def samples_by_type(rows: pl.DataFrame, skill_types: pl.DataFrame | None, k: int = 3, seed: int = 0) -> dict[str, list[dict]]:
    """Up to ``k`` skills per ESCO skill type, each with one sentence: what the data reads like."""
    if not rows.height:
        return {}
    frame = rows.select("skill_id", "label", "sentence")
    if skill_types is not None:
        frame = frame.join(skill_types, on="skill_id", how="left")
    else:
        frame = frame.with_columns(skill_type=pl.lit(None, pl.String))
    frame = frame.with_columns(pl.col("skill_type").fill_null("unknown").replace("", "unknown"))
    out: dict[str, list[dict]] = {}
    for (skill_type,), group in frame.sort("skill_id").group_by("skill_type", maintain_order=True):
        picked = group.unique("skill_id", keep="first", maintain_order=True)
        picked = picked.sample(min(k, picked.height), seed=seed, shuffle=True)
        out[skill_type] = picked.select("label", "sentence").to_dicts()
    return dict(sorted(out.items()))
