"""skilltrain: train, evaluate and apply the skill-extraction bi-encoder.

The public API, importable from the package itself::

    from skilltrain import SkillExtractor, TrainConfig, fit, evaluate

Three sub-packages name the three jobs: ``skilltrain.training``,
``skilltrain.evaluation`` and ``skilltrain.extraction``. Names are resolved
lazily so that importing the package does not import torch or Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "skilltrain.config",
    "fit": "skilltrain.training.fit",
    "FitResult": "skilltrain.training.fit",
    "evaluate": "skilltrain.evaluation.evaluate",
    "load_benchmarks": "skilltrain.evaluation.evaluate",
    "SkillExtractor": "skilltrain.extraction.extract",
    "SkillMatch": "skilltrain.extraction.extract",
    "SentenceSkills": "skilltrain.extraction.extract",
    "TextSkills": "skilltrain.extraction.extract",
    "BiEncoder": "skilltrain.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'skilltrain' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
