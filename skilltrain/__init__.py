"""skilltrain: train, evaluate and apply the skill-extraction bi-encoder.

The public API, importable from the package itself::

    from skilltrain import SkillExtractor, TrainConfig, fit, evaluate

Three sub-packages name the three jobs: ``skilltrain.training``,
``skilltrain.evaluation`` and ``skilltrain.extraction``. Names are resolved
lazily so that importing the package does not import torch or Ray.
"""

from __future__ import annotations

from skillgen.common import lazy_exports

_EXPORTS = {
    "TrainConfig": "skilltrain.config",
    "fit": "skilltrain.training.fit",
    "FitResult": "skilltrain.training.fit",
    "evaluate": "skilltrain.evaluation.evaluate",
    "load_benchmarks": "skilltrain.evaluation.evaluate",
    "SkillExtractor": "skilltrain.extraction.extractor",
    "SkillMatch": "skilltrain.extraction.extractor",
    "Evidence": "skilltrain.extraction.evidence",
    "SentenceSkills": "skilltrain.extraction.extractor",
    "TextSkills": "skilltrain.extraction.extractor",
    "BiEncoder": "skilltrain.model",
}

__all__, __getattr__, __dir__ = lazy_exports("skilltrain", _EXPORTS)
