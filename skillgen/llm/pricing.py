"""Model prices, so a bulk run's cost is known before it is paid.

The table ships as package data (``skillgen/data/prices.json``, USD per 1M
tokens) and can be overridden per model by a JSON file of the same layout or
by explicit per-run prices. Dated model names (``gpt-4o-mini-2024-07-18``)
resolve to their family by longest prefix. An unknown model is a
:class:`UserError`: a run without a price could not honour a spend cap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from skillgen.common.errors import UserError

__all__ = ["BATCH_DISCOUNT", "Price", "batch_price", "builtin_prices", "config_batch_price", "config_price",
           "load_prices", "lookup", "price_for"]

BATCH_DISCOUNT = 0.5  # OpenAI Batch API: half price, results within 24 h


@dataclass(frozen=True)
class Price:
    """USD per 1M input / output tokens, and where the number came from."""

    input_per_1m: float
    output_per_1m: float
    source: str = "table"

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1e6


def _validate_table(table: Mapping[str, Any], origin: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for model, entry in table.items():
        if model.startswith("_"):
            continue
        if not isinstance(entry, dict) or "input" not in entry or "output" not in entry:
            raise UserError(f"{origin}: price for {model!r} must be an object with 'input' and 'output' (USD per 1M tokens)")
        try:
            inp, outp = float(entry["input"]), float(entry["output"])
        except (TypeError, ValueError):
            raise UserError(f"{origin}: price for {model!r} is not a number") from None
        if inp < 0 or outp < 0:
            raise UserError(f"{origin}: price for {model!r} is negative")
        out[model] = {"input": inp, "output": outp}
        for key in ("batch_input", "batch_output"):  # optional: the Batch API price, if not the usual discount
            if key in entry:
                try:
                    out[model][key] = float(entry[key])
                except (TypeError, ValueError):
                    raise UserError(f"{origin}: {key} for {model!r} is not a number") from None
                if out[model][key] < 0:
                    raise UserError(f"{origin}: {key} for {model!r} is negative")
    return out


def builtin_prices() -> dict[str, dict[str, float]]:
    text = resources.files("skillgen").joinpath("data/prices.json").read_text(encoding="utf-8")
    return _validate_table(json.loads(text), "skillgen/data/prices.json")


def load_prices(override_file: str | Path | None = None) -> dict[str, dict[str, float]]:
    table = builtin_prices()
    if override_file:
        path = Path(override_file)
        if not path.is_file():
            raise UserError(f"{path}: prices file does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object of model -> {{input, output}}")
        table.update(_validate_table(data, str(path)))
    return table


def lookup(model: str, table: Mapping[str, Mapping[str, float]]) -> tuple[str, Mapping[str, float]] | None:
    name = model.split("/")[-1]
    if name in table:
        return name, table[name]
    candidates = [k for k in table if name.startswith(k + "-") or name.startswith(k + ":")]
    if not candidates:
        return None
    best = max(candidates, key=len)
    return best, table[best]


def price_for(
    model: str,
    prices_file: str | Path | None = None,
    input_per_1m: float | None = None,
    output_per_1m: float | None = None,
) -> Price:
    """The price of ``model``: explicit prices win, then the override file, then the shipped table."""
    if input_per_1m is not None and output_per_1m is not None:
        return Price(input_per_1m, output_per_1m, source="config")
    table = load_prices(prices_file)
    found = lookup(model, table)
    if found is None:
        if input_per_1m is not None or output_per_1m is not None:
            raise UserError(f"model {model!r} has no price in the table: give both --price-input and --price-output")
        raise UserError(
            f"no price known for model {model!r}: pass --price-input and --price-output (USD per 1M tokens) "
            f"or --prices FILE (known: {', '.join(sorted(table))})"
        )
    key, entry = found
    return Price(
        input_per_1m if input_per_1m is not None else entry["input"],
        output_per_1m if output_per_1m is not None else entry["output"],
        source=f"table:{key}" + (" (override file)" if prices_file else ""),
    )


def config_price(config: Any) -> Price:
    return price_for(config.model, config.prices_file, config.price_input_per_1m, config.price_output_per_1m)


def batch_price(price: Price, model: str, prices_file: str | Path | None = None) -> Price:
    """The Batch API price for ``model``: the table's ``batch_input``/``batch_output``, else the discount.

    A per-run price (``--price-input``/``--price-output``) is an online price: its batch price is the discount.
    """
    found = lookup(model, load_prices(prices_file))
    entry: Mapping[str, float] = found[1] if found else {}

    def side(name: str, online: float) -> float:
        if f"batch_{name}" in entry and entry[name] == online:  # the table's own online price: its batch price
            return entry[f"batch_{name}"]
        return online * BATCH_DISCOUNT

    return Price(side("input", price.input_per_1m), side("output", price.output_per_1m),
                 source=f"{price.source} (Batch API)")


def config_batch_price(config: Any) -> Price:
    return batch_price(config_price(config), config.model, config.prices_file)
