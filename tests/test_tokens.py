"""Token counting must work on an air-gapped node: run it with the network cut."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Runs in a fresh interpreter: every socket connect fails as on a node without internet.
NO_NETWORK = """
import errno, socket, sys, json
def refuse(*a, **k):
    raise OSError(errno.ENETUNREACH, "network is unreachable (test)")
socket.socket.connect = refuse
socket.create_connection = refuse
"""

COUNT = NO_NETWORK + """
from skillgen.llm.tokens import count_tokens, encoding_for, encoding_name_for
out = {}
for model in ("gpt-4o-mini", "gpt-3.5-turbo"):
    out[model] = {
        "encoding": encoding_name_for(model),
        "ids": encoding_for(model).encode("hello world"),
        "chat": count_tokens(model, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]),
    }
print(json.dumps(out))
"""

STOCK = NO_NETWORK + """
import tiktoken
tiktoken.get_encoding("cl100k_base")
"""


def run_offline(code: str, cache_dir: Path) -> subprocess.CompletedProcess:
    env = {"TIKTOKEN_CACHE_DIR": str(cache_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_stock_tiktoken_fails_offline_with_an_empty_cache(tmp_path):
    # The premise of the helper: without seeding, tiktoken needs the network.
    proc = run_offline(STOCK, tmp_path / "cache")
    assert proc.returncode != 0


def test_count_tokens_offline_seeds_cache_and_matches_known_ids(tmp_path):
    proc = run_offline(COUNT, tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["gpt-4o-mini"]["encoding"] == "o200k_base"
    assert out["gpt-3.5-turbo"]["encoding"] == "cl100k_base"
    assert out["gpt-3.5-turbo"]["ids"] == [15339, 1917]  # cl100k_base, published reference ids
    assert out["gpt-4o-mini"]["ids"] == [24912, 2375]  # o200k_base
    # 2 messages x 3 framing + 3 reply priming + roles ("system", "user": 1 each)
    # + contents ("Be brief." 3 tokens, "hello world" 2)
    assert out["gpt-3.5-turbo"]["chat"] == 2 * 3 + 3 + (1 + 3) + (1 + 2)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_unknown_models_fall_back_by_prefix():
    from skillgen.llm.tokens import encoding_name_for

    assert encoding_name_for("gpt-4.1-mini-2099-01-01") == "o200k_base"
    assert encoding_name_for("openai/gpt-5-nano") == "o200k_base"
    assert encoding_name_for("meta-llama/Llama-3.1-8B-Instruct") == "cl100k_base"
