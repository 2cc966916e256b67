"""Sentence splitting for job ads: list markers, boundaries, boilerplate, windows."""

from __future__ import annotations

import pytest

from skilltrain.extraction.splitting import is_boilerplate, split_sentences, window_words


def test_bullets_and_numbered_items_become_sentences():
    text = "• Python\n- SQL\n* Docker\n· Git\n▪ Linux\n1. Build pipelines\n2) Review code\n(3) Write tests\na) Mentor juniors\n(b) Run demos\niv. Plan sprints"
    assert split_sentences(text) == [
        "Python", "SQL", "Docker", "Git", "Linux", "Build pipelines", "Review code", "Write tests",
        "Mentor juniors", "Run demos", "Plan sprints",
    ]


def test_semicolons_inline_bullets_and_sentence_ends():
    text = "Strong SQL; fluent German. You know Docker! Tools: Python • Airflow · dbt"
    assert split_sentences(text) == ["Strong SQL", "fluent German.", "You know Docker!", "Tools: Python", "Airflow", "dbt"]


def test_abbreviations_and_numbers_do_not_split():
    assert split_sentences("Experience with e.g. Kafka or Spark, i.e. streaming.") == ["Experience with e.g. Kafka or Spark, i.e. streaming."]
    assert split_sentences("Salary approx. 50k per year.") == ["Salary approx. 50k per year."]
    assert split_sentences("5+ years of Java 1.8 experience") == ["5+ years of Java 1.8 experience"]
    assert split_sentences("- 2024 roadmap: migrate to AWS") == ["2024 roadmap: migrate to AWS"]


def test_boilerplate_and_empty_lines_are_skipped():
    text = (
        "\n\n   \nRequirements:\nWhat you'll do:\nForklift licence\n----\n2024\nApply now!\nClick here to apply\n"
        "We are an equal opportunity employer and value diversity.\nhttps://example.com/jobs/1\n"
        "jobs@example.com | www.example.com\nJob ID: AB-1234\nShare this job\nPosted 3 days ago\n"
    )
    assert split_sentences(text) == ["Forklift licence"]


def test_skill_lines_that_resemble_boilerplate_are_kept():
    assert not is_boilerplate("Apply statistical methods to sales data")
    assert not is_boilerplate("Knowledge of equal opportunity legislation")
    assert not is_boilerplate("Build REST APIs documented at https://example.com")
    assert is_boilerplate("Apply now")


def test_long_sentences_are_windowed_with_overlap():
    words = [f"w{i}" for i in range(100)]
    windows = split_sentences(" ".join(words), max_words=40, overlap=10)
    assert [len(w.split()) for w in windows] == [40, 40, 40]
    assert windows[0].split()[-10:] == windows[1].split()[:10]
    assert windows[-1].split()[-1] == "w99"
    assert window_words("short one", 40, 10) == ["short one"]
    assert window_words(" ".join(words[:41]), 40, 10)[-1].split() == words[30:41]


def test_crlf_and_whitespace_are_normalised():
    assert split_sentences("Python\r\n\r\n  Team   player  \rSQL") == ["Python", "Team player", "SQL"]
    assert split_sentences("") == []
    assert split_sentences("   \n\t") == []


@pytest.mark.parametrize("max_words,overlap", [(0, 0), (10, 10), (10, -1)])
def test_bad_window_settings_raise(max_words, overlap):
    with pytest.raises(ValueError):
        split_sentences("x", max_words=max_words, overlap=overlap)


def test_job_id_lines_need_an_id_marker():
    assert split_sentences("Job 12\nJob ID: 123\nRef. no. AB-12\nRequisition #4411\nJob: 55") == ["Job 12"]
