"""Response parsing and cleaning: every shape a model returns, strict about what is kept."""

import json

from skillgen.llm.validate import clean_sentence, validate_response


def test_clean_json_object():
    v = validate_response(json.dumps({"sentences": ["You have Python.", "You will lead a team."]}), 2)
    assert v.sentences == ["You have Python.", "You will lead a team."]
    assert v.parse_error is None and not v.dropped


def test_numbering_quotes_and_whitespace_stripped():
    items = ['1. "You have Python."', "2) \u201cYou will weld.\u201d", "- Experience with audits  is required", "  ", "#4 Lead the team"]
    v = validate_response(json.dumps({"sentences": items}), 10)
    assert v.sentences == ["You have Python.", "You will weld.", "Experience with audits is required", "Lead the team"]
    assert v.dropped["empty"] == 1


def test_duplicates_overlong_and_existing_dropped():
    long = " ".join(["word"] * 70)
    items = ["You have Python.", "you have python", long, "Already kept sentence.", 42, "A new one."]
    v = validate_response(json.dumps({"sentences": items}), 10, existing=["Already kept sentence"], max_words=60)
    assert v.sentences == ["You have Python.", "A new one."]
    assert v.dropped == {"duplicate": 2, "over-long": 1, "non-string": 1}


def test_count_capped_and_extra_reported():
    v = validate_response(json.dumps({"sentences": [f"Sentence number {i}" for i in range(5)]}), 3)
    assert len(v.sentences) == 3 and v.dropped["extra"] == 2


def test_fenced_list_and_plain_lines():
    assert validate_response('```json\n["a b c", "d e f"]\n```', 5).sentences == ["a b c", "d e f"]
    v = validate_response("1. Foo bar baz\n2. Baz qux quux\n", 5)
    assert v.sentences == ["Foo bar baz", "Baz qux quux"] and v.parse_error == "not JSON (plain lines)"


def test_truncated_json_keeps_closed_strings_only():
    v = validate_response('{"sentences": ["You have Python.", "You will weld.", "You will lea', 5)
    assert v.sentences == ["You have Python.", "You will weld."]
    assert v.parse_error == "truncated JSON"


def test_malformed_and_empty():
    assert validate_response("{not json", 5).sentences == []
    assert validate_response("", 5).parse_error == "empty response"
    assert validate_response(None, 5).parse_error == "empty response"
    assert validate_response('{"other": 1}', 5).parse_error == "JSON without a list of sentences"


def test_clean_sentence_idempotent():
    assert clean_sentence(clean_sentence('3. "Hello world"')) == "Hello world"


def test_error_text_is_redacted_before_it_reaches_records_and_logs():
    from skillgen.llm.client import redact

    body = ('Error code: 401 - {"error": {"message": "Incorrect API key provided: sk-proj-abcdef1234567. '
            'Sent Authorization: Bearer tok_live_998877", "api_key": "hunter2secret"}}')
    clean = redact(body)
    for secret in ("abcdef1234567", "tok_live_998877", "hunter2secret"):
        assert secret not in clean
    assert clean.startswith("Error code: 401") and "Incorrect API key provided" in clean


def test_a_sentence_that_is_only_the_label_is_dropped():
    """What a small model does when it has nothing to say (the quality report's label_only): the label alone,
    in any case or punctuation, is not a job-ad sentence; the label inside a sentence is kept."""
    answer = json.dumps({"sentences": ["Operate forklift trucks", "operate forklift trucks.",
                                       "You will operate our forklift trucks.", "OPERATE FORKLIFT TRUCKS!"]})
    v = validate_response(answer, 4, label="operate forklift trucks")
    assert v.sentences == ["You will operate our forklift trucks."]
    assert v.dropped["label-only"] == 3 and "3 label-only" in v.describe()
    assert len(validate_response(answer, 4).sentences) == 2  # without the label only duplicates go


def test_a_sentence_with_an_unfilled_placeholder_is_dropped():
    """SmolLM2-135M leaves template slots ("You have experience with [industry_specific]"; recorded answers in
    tests/test_real_answers.py): a template is not a job ad. Round brackets are ordinary text and stay."""
    answer = json.dumps({"sentences": ["You have experience with [industry_specific].", "You know SQL (PostgreSQL).",
                                       "Fill out the [optional requirement] form."]})
    v = validate_response(answer, 3)
    assert v.sentences == ["You know SQL (PostgreSQL)."] and v.dropped["placeholder"] == 2


def test_fragments_and_echoes_of_the_prompt_are_dropped():
    """Recorded SmolLM2 answers (tests/test_real_answers.py) hold a lone "1", a timestamp with a name and the
    prompt's "Skill: ..." line as whole "sentences". Fewer than three words is a fragment; a line that opens
    with one of the prompt's field names is an echo; a sentence merely mentioning a skill or a description stays."""
    items = ["1", "Bella Smith", "Skill: Electrooptic Devices, Systems and Components", "description : laser optics",
             "Alternative labels: optics; photonics", "You know Python.", "Skills in optics are a plus: apply now.",
             "The job description asks for laser safety skills."]
    v = validate_response(json.dumps({"sentences": items}), 10)
    assert v.sentences == items[5:]
    assert v.dropped == {"too-short": 2, "prompt-echo": 3}
