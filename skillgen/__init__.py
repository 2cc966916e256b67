"""skillgen: synthetic job-ad sentences for every ESCO skill, from any OpenAI-compatible endpoint on Ray.

The public API, importable from the package itself::

    from skillgen import GenerationConfig, estimate, run_generation, load_skills

Names are resolved lazily so that ``import skillgen`` (and ``skillgen.common``,
which ``skilltrain`` uses) does not pull in Ray or the OpenAI client.
"""

from __future__ import annotations

from skillgen.common.lazy import lazy_exports

_EXPORTS = {
    "GenerationConfig": "skillgen.config",
    "load_config": "skillgen.config",
    "run_generation": "skillgen.run",
    "RunSummary": "skillgen.run",
    "estimate": "skillgen.estimate",
    "CostEstimate": "skillgen.estimate",
    "status": "skillgen.commands.status",
    "Skill": "skillgen.common.taxonomy",
    "load_skills": "skillgen.common.taxonomy",
    "UserError": "skillgen.common.errors",
}

__all__, __getattr__, __dir__ = lazy_exports("skillgen", _EXPORTS)
