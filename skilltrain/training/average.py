"""Weight averaging with the start model: ``alpha * trained + (1 - alpha) * start``, alpha picked on validation.

Fine-tuning on synthetic sentences moves the encoder towards text that is not
quite like real job ads; interpolating in weight space back towards the
pre-trained model (Wortsman et al. 2022, "Robust fine-tuning of zero-shot
models", WiSE-FT) often keeps most of the in-domain gain and recovers
robustness elsewhere. Both models share one architecture and start point, so
the interpolation is a plain per-tensor mix. ``alpha = 1`` (the trained model)
is always a candidate, so averaging can never choose worse than not averaging
on validation.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch


def interpolate(start: Mapping[str, torch.Tensor], trained: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """Per tensor ``alpha * trained + (1 - alpha) * start``; integer buffers (position ids) are taken from ``trained``."""
    if start.keys() != trained.keys():
        raise ValueError("weight averaging needs two state dicts of the same architecture")
    out = {}
    for name, t in trained.items():
        s = start[name].to(device=t.device)
        out[name] = torch.lerp(s.to(t.dtype), t, alpha) if t.is_floating_point() else t.clone()
    return out


def choose_alpha(
    model: torch.nn.Module,
    start: Mapping[str, torch.Tensor],
    alphas: Iterable[float],
    score: Callable[[torch.nn.Module], float],
) -> tuple[float, dict[float, float]]:
    """Load the best of ``alphas`` (and 1.0) by ``score`` into ``model``; returns (alpha, score per alpha).

    ``model`` holds the trained weights on entry. Ties go to the larger alpha (less averaging).
    """
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    scores: dict[float, float] = {}
    for alpha in sorted(set(alphas) | {1.0}):
        model.load_state_dict(interpolate(start, trained, alpha))
        scores[alpha] = float(score(model))
    best = max(scores, key=lambda a: (scores[a], a))
    model.load_state_dict(interpolate(start, trained, best))
    return best, scores
