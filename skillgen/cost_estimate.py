"""What a bulk generation will cost and how long it will take, before paying for it.

Prompt tokens are exact (the real prompts, tiktoken with the model's
encoding, OpenAI's chat framing). Completion tokens are either the worst case
(``max_tokens`` per request) or measured with ``pilot`` real requests on a
few skills (their sentences are not kept; the pilot's own cost is reported).
Duration is what the configured limits allow: requests/RPM and debited tokens
(prompt + max_tokens, as OpenAI-style limiters charge)/TPM, whichever binds.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from skillgen.llm.tokens import size_max_tokens
from skillgen.llm.client import ChatClient, RequestError, call_with_retry, request_seed
from skillgen.config import GenerationConfig
from skillgen.common.errors import UserError
from skillgen.llm.pricing import batch_price, config_price
from skillgen.llm.prompts import build_messages
from skillgen.common.taxonomy import Skill
from skillgen.llm.tokens import count_tokens, encoding_name_for
from skillgen.plan import selected_skills

__all__ = ["CostEstimate", "estimate"]


@dataclass
class CostEstimate:
    model: str
    encoding: str
    skills: int
    sentences_per_skill: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    completion_source: str  # "max_tokens" or "pilot:K"
    max_tokens: int
    price_input_per_1m: float
    price_output_per_1m: float
    price_source: str
    cost_usd: float
    cost_batch_usd: float
    duration_s: float | None
    binding_limit: str | None
    batch_price_input_per_1m: float = 0.0
    batch_price_output_per_1m: float = 0.0
    batch_files: int = 0  # input files of at most batch_max_requests lines
    batch_waves: int = 1  # rounds the enqueued-token cap forces (each within the 24 h window)
    pilot_requests: int = 0
    pilot_cost_usd: float = 0.0
    pilot_completion_per_request: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        dur = "unlimited (no --rpm/--tpm given)" if self.duration_s is None else _fmt_duration(self.duration_s)
        lines = [
            f"model            {self.model} (encoding {self.encoding}; price ${self.price_input_per_1m}/1M in, "
            f"${self.price_output_per_1m}/1M out, {self.price_source})",
            f"skills           {self.skills} x {self.sentences_per_skill} sentences = {self.requests} requests",
            f"prompt tokens    {self.prompt_tokens:,} (exact)",
            f"completion tok.  {self.completion_tokens:,} ({self.completion_source})",
            f"online           ${self.cost_usd:,.4f}, duration {dur}"
            + (f" (bound by {self.binding_limit})" if self.binding_limit else ""),
            f"Batch API        ${self.cost_batch_usd:,.4f} (${self.batch_price_input_per_1m}/1M in, "
            f"${self.batch_price_output_per_1m}/1M out), {self.batch_files} input files in {self.batch_waves} "
            f"wave(s), each within the 24 h window: at most {self.batch_waves * 24} h (--mode batch)",
        ]
        if self.pilot_requests:
            lines.append(f"pilot            {self.pilot_requests} requests, ${self.pilot_cost_usd:.4f}, "
                         f"{self.pilot_completion_per_request:.0f} completion tokens/request on average")
        lines += [f"note             {n}" for n in self.notes]
        return "\n".join(lines)


def _fmt_duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def prompt_tokens_for(config: GenerationConfig, skills: list[Skill]) -> list[int]:
    return [count_tokens(config.model, build_messages(s, config.n_sentences, config.prompt_spec)) for s in skills]


def duration_for(config: GenerationConfig, requests: int, debited_tokens: float, prompt: float, completion: float) -> tuple[float | None, str | None]:
    options = []
    if config.rpm:
        options.append((requests / config.rpm * 60.0, "rpm"))
    if config.tpm:
        options.append((debited_tokens / config.tpm * 60.0, "tpm"))
    if config.input_tpm:
        options.append((prompt / config.input_tpm * 60.0, "input_tpm"))
    if config.output_tpm:
        options.append((completion / config.output_tpm * 60.0, "output_tpm"))
    if not options:
        return None, None
    return max(options)


async def _pilot(config: GenerationConfig, skills: list[Skill]) -> list[tuple[int, int]]:
    client = ChatClient(config.base_url, config.model, config.api_key_env, timeout_s=config.request_timeout_s,
                        connect_timeout_s=config.connect_timeout_s, temperature=config.temperature, top_p=config.top_p,
                        response_format=config.request_response_format())

    async def one(skill: Skill) -> tuple[int, int]:
        messages = build_messages(skill, config.n_sentences, config.prompt_spec)
        key = f"pilot:{skill.skill_id}"  # each pilot request its own seed, as a run's requests (request_seed)
        seed = request_seed(config.seed, key, range(config.n_sentences))
        res = await call_with_retry(lambda: client.complete(messages, config.max_tokens, key, seed=seed),
                                    config.max_attempts, config.backoff_base_s, config.backoff_max_s)
        return res.prompt_tokens or 0, res.completion_tokens or 0

    sem = asyncio.Semaphore(8)

    async def limited(skill: Skill) -> tuple[int, int]:
        async with sem:
            return await one(skill)

    try:
        return await asyncio.gather(*(limited(s) for s in skills))
    except RequestError as exc:
        raise UserError(f"pilot request failed: {exc.error_class}: {exc.message}") from None
    finally:
        await client.close()


def estimate(config: GenerationConfig, pilot: int = 0) -> CostEstimate:
    """Cost and duration of generating ``config.n_sentences`` for every selected skill."""
    price = config_price(config)
    skills = selected_skills(config)
    prompts = prompt_tokens_for(config, skills)
    requests = len(skills)
    prompt_total = sum(prompts)
    completion_per_request = float(config.max_tokens)
    source = "max_tokens (upper bound; use --pilot K to measure)"
    max_tokens_debited = float(config.max_tokens)
    notes: list[str] = []
    pilot_cost = 0.0
    pilot_avg = None
    if pilot > 0:
        import random

        picked = random.Random(config.sample_seed).sample(skills, min(pilot, len(skills)))
        results = asyncio.run(_pilot(config, picked))
        completions = [c for _, c in results]
        pilot_avg = statistics.fmean(completions)
        completion_per_request = pilot_avg
        source = f"pilot: mean of {len(results)} real requests"
        pilot_cost = sum(price.cost(p, c) for p, c in results)
        if config.adaptive_max_tokens and len(completions) >= 5:
            per_sentence = sorted(c / config.n_sentences for c in completions)
            q = per_sentence[min(len(per_sentence) - 1, math.ceil(config.max_tokens_quantile * len(per_sentence)) - 1)]
            max_tokens_debited = size_max_tokens(q, config.n_sentences, config.max_tokens, config.max_tokens_margin)
    completion_total = int(round(completion_per_request * requests))
    cost = price.cost(prompt_total, completion_total)
    bprice = batch_price(price, config.model, config.prices_file)
    queued = prompt_total + config.max_tokens * requests  # what an enqueued-token limit counts
    waves = math.ceil(queued / config.batch_max_enqueued_tokens) if config.batch_max_enqueued_tokens else 1
    debited = prompt_total + max_tokens_debited * requests
    duration, binding = duration_for(config, requests, debited, prompt_total, completion_total)
    if config.tpm and max_tokens_debited + max(prompts) > config.tpm:
        notes.append("a single request (prompt + max_tokens) exceeds --tpm: lower --max-tokens or raise --tpm")
    return CostEstimate(
        model=config.model, encoding=encoding_name_for(config.model), skills=len(skills),
        sentences_per_skill=config.n_sentences, requests=requests, prompt_tokens=prompt_total,
        completion_tokens=completion_total, completion_source=source, max_tokens=config.max_tokens,
        price_input_per_1m=price.input_per_1m, price_output_per_1m=price.output_per_1m, price_source=price.source,
        cost_usd=cost, cost_batch_usd=bprice.cost(prompt_total, completion_total), duration_s=duration,
        binding_limit=binding, batch_price_input_per_1m=bprice.input_per_1m,
        batch_price_output_per_1m=bprice.output_per_1m, batch_files=math.ceil(requests / config.batch_max_requests),
        batch_waves=max(1, waves),
        pilot_requests=pilot if pilot > 0 else 0, pilot_cost_usd=pilot_cost, pilot_completion_per_request=pilot_avg,
        notes=notes,
    )
