"""skillgen: synthetic job-ad sentences for every ESCO skill, from any OpenAI-compatible endpoint on Ray.

The public API, importable from the package itself::

    from skillgen import GenerationConfig, estimate, run_generation, load_skills

This and :mod:`skillgen.common` are the only ways into skillgen from skilltrain and cluster
(``tests/test_import_graph.py`` holds that line); everything else may be reorganised. Names are
resolved lazily so that ``import skillgen`` (and ``skillgen.common``) does not pull in Ray or the
OpenAI client.
"""

from __future__ import annotations

from skillgen.common.lazy import lazy_exports

_EXPORTS = {
    # configuring a run
    "GenerationConfig": "skillgen.config",
    "load_config": "skillgen.config",
    "make_config": "skillgen.config",
    "read_toml": "skillgen.config",
    "check_run": "skillgen.checks",
    "FingerprintMismatch": "skillgen.rundir.runstate",
    # running one, and what it returns
    "estimate": "skillgen.cost_estimate",
    "CostEstimate": "skillgen.cost_estimate",
    "run_generation": "skillgen.generation",
    "RunSummary": "skillgen.summary",
    "RunState": "skillgen.summary",
    "StopReason": "skillgen.summary",
    # reading a run dir
    "RunDir": "skillgen.rundir.rundir",
    "RunDirLease": "skillgen.rundir.lease",
    "status": "skillgen.commands.status",
    "quality_report": "skillgen.quality",
    "QualityReport": "skillgen.quality",
    "plot_quality": "skillgen.quality.plots",
    "relevance_report": "skillgen.quality.relevance",
    "RelevanceReport": "skillgen.quality.relevance",
    "own_skill_ranks": "skillgen.quality.relevance",
    "OwnRanks": "skillgen.quality.relevance",
    # the built-in OpenAI-compatible simulator
    "SimulatorConfig": "skillgen.simulator",
    "run_in_thread": "skillgen.simulator",
    # the taxonomy and errors (also in skillgen.common)
    "Skill": "skillgen.common.taxonomy",
    "load_skills": "skillgen.common.taxonomy",
    "UserError": "skillgen.common.errors",
}

__all__, __getattr__, __dir__ = lazy_exports("skillgen", _EXPORTS)
