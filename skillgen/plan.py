"""What a generation run will do, decided before anything is sent; shared by both drivers.

Online mode (:mod:`skillgen.online`) and batch mode (:mod:`skillgen.batch`)
plan the same way: the selected skills, minus what the run dir already holds,
become :class:`SkillTask` s; both end with one :class:`RunSummary`. Keeping
this here (not in either driver) is what lets batch mode not import the
online runtime and vice versa.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from skillgen.common.errors import UserError
from skillgen.common.taxonomy import Skill
from skillgen.config import GenerationConfig
from skillgen.llm.prompts import build_messages
from skillgen.llm.tokens import count_tokens
from skillgen.rundir.runstate import request_key

if TYPE_CHECKING:
    from skillgen.llm.pricing import Price
    from skillgen.rundir.rundir import RunDir


class StopReason(StrEnum):
    """Why a run stopped before finishing (``RunSummary.status`` is ``"stopped: <reason>"`` or ``"interrupted"``)."""

    SPEND_CAP = "spend cap"
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM
    LEASE_LOST = "run dir lease lost"
    BUDGET_LOST = "budget actor lost"
    SCHEDULER_LOST = "scheduler actor lost"
    LEDGER_WRITE_FAILED = "ledger write failed"
    CANCELLED = "cancelled"  # skillgen batch cancel


@dataclass(frozen=True)
class SkillTask:
    """One skill's outstanding work: the sample indices still missing and the sentences to avoid repeating."""

    request_key: str
    skill: Skill
    missing: tuple[int, ...]
    avoid: tuple[str, ...] = ()


@dataclass
class RunSummary:
    run_dir: str
    status: str  # "complete", "incomplete", "stopped: <reason>", "interrupted"
    skills_selected: int
    skills_already_done: int
    skills_attempted: int
    skills_completed: int
    skills_failed: int
    skills_remaining: int
    rows_written: int
    failures_written: int
    requests: int
    retries: int
    rate_limited: int
    truncated: int
    prompt_tokens: int
    completion_tokens: int
    estimated_cost_usd: float  # upper bound before the run: exact prompts + max_tokens per request
    actual_cost_usd: float  # this invocation, by the ledger (unknown outcomes priced by unknown_outcome)
    total_cost_usd: float  # everything this run dir has paid for, by the ledger
    estimated_prompt_tokens: int
    elapsed_s: float
    workers: int
    budget: dict[str, Any] = field(default_factory=dict)
    ledger: dict[str, Any] = field(default_factory=dict)  # ledger_totals of the run dir after this invocation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        return (
            f"{self.status}: {self.skills_completed} skills completed, {self.skills_failed} failed, "
            f"{self.skills_remaining} remaining ({self.skills_already_done} were done before) | "
            f"{self.rows_written} rows, {self.failures_written} failure records written\n"  # two lines of < 300 characters
            f"  {self.requests} requests, {self.retries} retries, {self.rate_limited} 429s, {self.truncated} truncated | "
            f"tokens {self.prompt_tokens} prompt (estimated {self.estimated_prompt_tokens}) + {self.completion_tokens} completion | "
            f"cost ${self.actual_cost_usd:.4f} (estimate up to ${self.estimated_cost_usd:.4f}; run dir total ${self.total_cost_usd:.4f}) | "
            f"{self.elapsed_s:.1f} s"
        )


def preflight(config: GenerationConfig) -> None:
    """Fail before spending if the endpoint is unreachable or rejects the key."""
    import httpx2

    from skillgen.llm.client import resolve_api_key

    key = resolve_api_key(config.api_key_env, config.base_url)
    try:
        resp = httpx2.get(f"{config.base_url}/models", headers={"Authorization": f"Bearer {key}"},
                          timeout=httpx2.Timeout(config.connect_timeout_s))
    except httpx2.HTTPError as exc:
        raise UserError(f"endpoint {config.base_url} is unreachable ({type(exc).__name__}); check --base-url") from None
    if resp.status_code in (401, 403):
        raise UserError(f"endpoint {config.base_url} rejected the API key from ${config.api_key_env} (HTTP {resp.status_code})")


def build_tasks(config: GenerationConfig, skills, progress) -> tuple[list[SkillTask], int, int]:
    """Tasks for the skills not yet finished, and how many were already done; plus their prompt tokens."""
    tasks, already, prompt_est = [], 0, 0
    n = config.n_sentences
    seen = set()
    for skill in skills:
        key = request_key(config, skill.skill_id)
        if key in seen:
            continue
        seen.add(key)
        have = progress.have.get(key, {})
        if len(have) >= n or (key in progress.failed and not config.retry_failures):
            already += 1
            continue
        missing = tuple(i for i in range(n) if i not in have)
        avoid = tuple(have[i] for i in sorted(have))
        tasks.append(SkillTask(key, skill, missing, avoid))
        prompt_est += count_tokens(config.model, build_messages(skill, len(missing), config.prompt_spec, avoid=list(avoid[-40:])))
    return tasks, already, prompt_est


@dataclass
class RunPlan:
    """What a run will do, decided before anything is started or sent."""

    skills: list
    tasks: list[SkillTask]
    already: int
    prompt_est: int
    est_cost: float
    spent_before: float
    written: set[tuple[str, int]]  # (request_key, sample_idx) already on disk


def plan_run(config: GenerationConfig, price: "Price", run_dir: "RunDir") -> RunPlan:
    """Selected skills minus what ``run_dir`` holds; refuses (UserError) a run dir already at the spend cap."""
    from skillgen.estimate import selected_skills

    skills = selected_skills(config)
    state = run_dir.progress()
    tasks, already, prompt_est = run_dir.missing(config, skills, state)
    spent = run_dir.spend(config.unknown_outcome).total_usd
    if config.spend_cap_usd is not None and spent >= config.spend_cap_usd and tasks:
        raise UserError(f"spend cap ${config.spend_cap_usd:.4f} already reached by this run dir "
                        f"(${spent:.4f} spent, by the ledger); rerun with a higher --spend-cap-usd to continue")
    written = {(k, i) for k, have in state.have.items() for i in have}
    return RunPlan(skills, tasks, already, prompt_est, price.cost(prompt_est, config.max_tokens * len(tasks)), spent, written)
