"""Flags shared by ``estimate`` and ``run``: every config field a user may set, with help.

Defaults are those of :class:`GenerationConfig`; a flag overrides the value
from ``--config FILE`` (TOML), which overrides the default. Flags that were
not given are absent from the namespace (``argparse.SUPPRESS``), so they never
shadow the file.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

from skillgen.common.argparsing import new_parser
from skillgen.common.paths import ESCO_HELP
from skillgen.config import GenerationConfig, load_config

__all__ = ["add_config_arguments", "config_from_args"]

S = argparse.SUPPRESS
D = GenerationConfig.model_fields


def _d(name: str) -> str:
    default = D[name].default
    return f" (default: {default})"


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=None,
                   help="TOML config; sections [endpoint] [sampling] [prompt] [limits] [execution] [data] or top-level keys "
                        "named like GenerationConfig fields; flags override it")
    g = p.add_argument_group("skills")
    g.add_argument("--esco", metavar="CSV", default=S, help=ESCO_HELP)
    g.add_argument("--limit", type=int, default=S, help="only the first N skills (after --sample/--skill-type)")
    g.add_argument("--sample", type=int, default=S, help="a random sample of N skills, reproducible by --seed")
    g.add_argument("--seed", dest="sample_seed", type=int, default=S, help="seed for --sample" + _d("sample_seed"))
    g.add_argument("--skill-type", dest="skill_types", action="append", default=S,
                   help="keep only this ESCO skillType (repeatable), e.g. 'skill/competence' or 'knowledge'")
    g.add_argument("-n", "--sentences", dest="n_sentences", type=int, default=S, help="sentences per skill" + _d("n_sentences"))
    e = p.add_argument_group("endpoint and model")
    e.add_argument("--base-url", default=S, help="OpenAI-compatible endpoint (simulator, vLLM, OpenAI)" + _d("base_url"))
    e.add_argument("--model", default=S, help="model name; needs a price (table, --prices or --price-*)" + _d("model"))
    e.add_argument("--api-key-env", default=S, help="NAME of the environment variable holding the API key; endpoints other "
                                                   "than api.openai.com may need none" + _d("api_key_env"))
    e.add_argument("--no-json-schema", dest="json_schema", action="store_false", default=S,
                   help="use response_format json_object instead of a strict JSON schema")
    e.add_argument("--json-schema-in", choices=["json_schema", "json_object"], default=S,
                   help="json_object: send the schema as response_format {type: json_object, schema} (llama-cpp-python's "
                        "server rejects OpenAI's json_schema type)" + _d("json_schema_in"))
    e.add_argument("--no-response-format", dest="response_format", action="store_false", default=S,
                   help="send no response_format (endpoint does not support it); the prompt still asks for JSON")
    e.add_argument("--timeout", dest="request_timeout_s", type=float, default=S, help="seconds per request" + _d("request_timeout_s"))
    s = p.add_argument_group("sampling")
    s.add_argument("--temperature", type=float, default=S, help="sampling temperature" + _d("temperature"))
    s.add_argument("--top-p", type=float, default=S, help="nucleus sampling top_p" + _d("top_p"))
    s.add_argument("--llm-seed", dest="seed", type=int, default=S, help="run seed: each request carries a seed derived from it and "
                   "its request key, so the same config writes the same data (best-effort on hosted APIs)" + _d("seed"))
    s.add_argument("--max-tokens", type=int, default=S, help="ceiling for completion tokens per request" + _d("max_tokens"))
    s.add_argument("--no-adaptive-max-tokens", dest="adaptive_max_tokens", action="store_false", default=S,
                   help="always send --max-tokens instead of a learned high quantile of completion lengths")
    b = p.add_argument_group("budget")
    b.add_argument("--rpm", type=int, default=S, help="requests per minute for this API key (default: learned from headers)")
    b.add_argument("--tpm", type=int, default=S, help="tokens per minute (prompt + max_tokens debited per request)")
    b.add_argument("--input-tpm", type=int, default=S, help="separate input-token-per-minute limit, if the provider has one")
    b.add_argument("--output-tpm", type=int, default=S, help="separate output-token-per-minute limit, if the provider has one")
    b.add_argument("--spend-cap-usd", type=float, default=S, help="stop cleanly before the run dir's total spend would exceed this")
    b.add_argument("--unknown-outcome", choices=["worst_case", "prompt_only", "free"], default=S,
                   help="how spend counts a request whose outcome is unknown (timeout, lost connection, dead worker)"
                        + _d("unknown_outcome"))
    b.add_argument("--prices", dest="prices_file", metavar="JSON", default=S,
                   help="price table overriding the shipped one: {model: {input, output}} in USD per 1M tokens")
    b.add_argument("--price-input", dest="price_input_per_1m", type=float, default=S, help="USD per 1M input tokens for --model")
    b.add_argument("--price-output", dest="price_output_per_1m", type=float, default=S, help="USD per 1M output tokens for --model")
    x = p.add_argument_group("execution")
    x.add_argument("--workers", type=int, default=S, help="worker actors (default: one per CPU of the Ray cluster)")
    x.add_argument("--run-dir", default=S, help="output directory (Parquet shards, run.json)" + _d("run_dir"))
    x.add_argument("--chunk-size", type=int, default=S, help="skills handed to a worker at a time" + _d("chunk_size"))
    x.add_argument("--flush-rows", type=int, default=S, help="write a shard every N rows" + _d("flush_rows"))
    x.add_argument("--flush-seconds", type=float, default=S, help="... or every T seconds" + _d("flush_seconds"))
    x.add_argument("--max-attempts", type=int, default=S, help="HTTP attempts per request (429/5xx/timeouts)" + _d("max_attempts"))
    x.add_argument("--max-content-attempts", type=int, default=S,
                   help="responses per skill before an invalid/short skill becomes a failure record" + _d("max_content_attempts"))
    x.add_argument("--address", dest="ray_address", default=S, help="Ray cluster address (default: $RAY_ADDRESS or a local instance)")
    x.add_argument("--ray-address", dest="ray_address", default=S, help=argparse.SUPPRESS)  # old spelling
    a = p.add_argument_group("Batch API (--mode batch)")
    a.add_argument("--mode", choices=["online", "batch"], default=S,
                   help="online: Ray workers call the chat API; batch: OpenAI Batch API (half price, within 24 h)" + _d("mode"))
    a.add_argument("--batch-max-requests", type=int, default=S, help="requests per batch input file" + _d("batch_max_requests"))
    a.add_argument("--batch-max-bytes", type=int, default=S, help="bytes per batch input file" + _d("batch_max_bytes"))
    a.add_argument("--batch-max-enqueued-tokens", type=int, default=S,
                   help="cap on prompt + max_tokens queued in open batches at once (your org's enqueued-token limit)")
    a.add_argument("--batch-poll-min-s", type=float, default=S, help="first poll interval" + _d("batch_poll_min_s"))
    a.add_argument("--batch-poll-max-s", type=float, default=S, help="longest poll interval (backoff)" + _d("batch_poll_max_s"))
    a.add_argument("--batch-max-rounds", type=int, default=S,
                   help="batches one skill may go into before what is missing becomes a failure record" + _d("batch_max_rounds"))
    a.add_argument("--batch-shortfall", choices=["batch", "online"], default=S,
                   help="what the first batches leave missing (invalid answers, line errors) goes to follow-up batches, "
                        "or online under the same lease" + _d("batch_shortfall"))


@functools.lru_cache(maxsize=1)
def config_flags() -> dict[str, str]:
    """GenerationConfig field -> the flag that sets it (its first visible spelling): errors name what the user typed."""
    parser = new_parser()
    add_config_arguments(parser)
    flags: dict[str, str] = {}
    for action in parser._actions:
        if action.option_strings and action.help != argparse.SUPPRESS and action.dest in D:
            flags.setdefault(action.dest, action.option_strings[0])
    return flags


def config_from_args(args: argparse.Namespace, extra_ignore: tuple[str, ...] = ()) -> GenerationConfig:
    overrides: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key in D and key not in extra_ignore:
            overrides[key] = value
    return load_config(getattr(args, "config", None), overrides, config_flags())
