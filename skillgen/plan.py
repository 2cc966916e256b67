"""What a generation run will do, decided before anything is sent; shared by both drivers.

Online mode (:mod:`skillgen.online`) and batch mode (:mod:`skillgen.batch`)
plan the same way, with :func:`plan_run`: the selected skills, minus what the
run dir already holds, become :class:`SkillTask` s; a run dir already at the
spend cap is refused; the estimate is prompt tokens (exact) plus ``max_tokens``
per task at the mode's price. Both end with one
:class:`~skillgen.summary.RunSummary`. Keeping this here (not in either
driver) is what lets batch mode not import the online runtime and vice versa,
and what keeps the run dir (:mod:`skillgen.rundir`) free of planning: it
says what it holds, this module decides what is missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

from skillgen.common.errors import UserError
from skillgen.common.taxonomy import Skill, iter_skills, load_skills, select
from skillgen.config import GenerationConfig
from skillgen.llm.pricing import Price
from skillgen.llm.prompts import build_messages
from skillgen.llm.tokens import count_tokens
from skillgen.rundir.rundir import RunDir
from skillgen.rundir.runstate import Progress, request_key
from skillgen.rundir.sinks import utcnow

__all__ = ["RunPlan", "SkillTask", "build_tasks", "plan_run", "preflight", "selected_skills"]


@dataclass(frozen=True)
class SkillTask:
    """One skill's outstanding work: the sample indices still missing and the sentences to avoid repeating."""

    request_key: str
    skill: Skill
    missing: tuple[int, ...]
    avoid: tuple[str, ...] = ()
    answered: int = 0  # answers the key got in earlier invocations (the ledger's 200s): seeds count on from it


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


def selected_skills(config: GenerationConfig) -> list[Skill]:
    """The skills ``config`` selects (``--limit``, ``--sample``, ``--skill-type``, labels); never empty."""
    taxonomy = load_skills(config.esco)
    if config.skill_types:
        known = set(taxonomy["skill_type"].unique().to_list())
        unknown = [t for t in config.skill_types if t not in known]
        if unknown:
            raise UserError(f"--skill-type (skill_types in a config) {', '.join(map(repr, unknown))}: no skill has this type; "
                            f"the taxonomy's types: {', '.join(repr(t) for t in sorted(known) if t)}")
    df = select(taxonomy, limit=config.limit, sample=config.sample, seed=config.sample_seed,
                types=config.skill_types, labels=config.labels)
    skills = list(iter_skills(df))
    if not skills:
        raise UserError("the skill selection is empty (check --limit/--sample/--skill-type)")
    return skills


def build_tasks(config: GenerationConfig, skills: Iterable[Skill], progress: Progress) -> tuple[list[SkillTask], int, int]:
    """Tasks for the skills ``progress`` (what a run dir holds) does not finish, how many it finishes, and the
    tasks' prompt tokens."""
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
        tasks.append(SkillTask(key, skill, missing, avoid, progress.answered.get(key, 0)))
        prompt_est += count_tokens(config.model, build_messages(skill, len(missing), config.prompt_spec, avoid=list(avoid[-40:])))
    return tasks, already, prompt_est


@dataclass
class RunPlan:
    """What one invocation will do, decided before anything is started or sent."""

    config: GenerationConfig
    skills: list[Skill]
    progress: Progress  # what the run dir held when planned
    tasks: list[SkillTask]
    already: int  # selected skills already finished
    prompt_est: int  # prompt tokens of the tasks, exact
    est_cost: float  # upper bound: prompts + max_tokens per task, at the mode's price
    spent_before: float  # the run dir's spend by the ledger, before this invocation
    t0: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=lambda: utcnow().isoformat())

    @property
    def written(self) -> set[tuple[str, int]]:
        """(request_key, sample_idx) slots already on disk."""
        return {(k, i) for k, have in self.progress.have.items() for i in have}


def plan_run(config: GenerationConfig, price: Price, run_dir: RunDir) -> RunPlan:
    """Selected skills minus what ``run_dir`` holds; refuses (UserError) a run dir already at the spend cap."""
    skills = selected_skills(config)
    progress = run_dir.progress()
    tasks, already, prompt_est = build_tasks(config, skills, progress)
    spent = run_dir.spend(config.unknown_outcome).total_usd
    if config.spend_cap_usd is not None and spent >= config.spend_cap_usd and tasks:
        raise UserError(f"spend cap ${config.spend_cap_usd:.4f} already reached by this run dir "
                        f"(${spent:.4f} spent, by the ledger); rerun with a higher --spend-cap-usd to continue")
    est_cost = price.cost(prompt_est, config.max_tokens * len(tasks))
    return RunPlan(config, skills, progress, tasks, already, prompt_est, est_cost, spent)
