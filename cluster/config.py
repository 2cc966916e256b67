"""``PipelineConfig``: one file drives generate -> train -> evaluate.

The pipeline config nests the two halves' own configs (``[generation]`` is a
:class:`skillgen.config.GenerationConfig`, ``[training]`` a
:class:`skilltrain.config.TrainConfig`) instead of redefining their fields, so
each half keeps one source of truth. Paths that tie the stages together (the
generation run dir is the training data, the model dir is what gets
evaluated) are derived from ``run_dir`` here, not repeated by the user.
The resolved config is written to ``<run_dir>/pipeline.json``; it never holds
a secret, only the name of the environment variable with the API key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from skillgen import GenerationConfig, make_config, read_toml
from skillgen.common import UserError, format_validation_error
from skilltrain.config import PathOrURI, TrainConfig

SIMULATOR_BASE_URL = "simulator"  # generation.base_url value that means "start the built-in simulator"
SIMULATOR_PLACEHOLDER_URL = "http://127.0.0.1:1/v1"  # stands in for the simulator's URL when checking a config


class SimulatorSection(BaseModel):
    """The built-in OpenAI-compatible simulator, started and stopped by the pipeline."""

    model_config = ConfigDict(extra="forbid")

    # "auto": loopback on a fresh local Ray; this node's IP when the pipeline joins a cluster
    # (ray job submit, --address), so generation workers on other nodes reach it. Or an explicit address.
    host: str = "auto"
    latency: str = "lognormal:-1.6,0.4"
    rpm: int | None = None
    tpm: int | None = None
    fault_rate: str = ""
    seed: int = 0


class EvaluationSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sets: list[str] = Field(default_factory=lambda: ["tech", "house"])
    split: Literal["test", "validation"] = "test"
    baseline: bool = True  # also score the untrained start model (cached in the run dir)

    @field_validator("sets")
    @classmethod
    def _sets(cls, value: list[str]) -> list[str]:
        from skilltrain.evaluation.benchmarks import SETS

        bad = [s for s in value if s not in SETS]
        if bad or not value:
            raise ValueError(f"unknown benchmark set(s) {bad}; choose from {list(SETS)}")
        return value


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _source: str = PrivateAttr(default="pipeline config")  # "--config FILE": how errors name the file

    run_dir: PathOrURI = Path("runs/local")  # or s3://bucket/prefix (keys from AWS_* env) on a cluster without a shared disk
    ray_address: str | None = None
    esco: Path | None = None
    benchmark_dir: Path | None = None
    simulator: SimulatorSection = Field(default_factory=SimulatorSection)
    generation: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)

    # ---- derived stage configs ------------------------------------------------

    @property
    def source(self) -> str:
        """``--config FILE``, the way error messages name the file."""
        return self._source

    @property
    def uses_simulator(self) -> bool:
        return self.generation.get("base_url", SIMULATOR_BASE_URL) == SIMULATOR_BASE_URL

    def under_run_dir(self, name: str) -> Path | str:
        """``<run_dir>/<name>``, a Path or a URI like the run dir."""
        return self.run_dir / name if isinstance(self.run_dir, Path) else f"{self.run_dir.rstrip('/')}/{name}"

    @property
    def generation_dir(self) -> Path | str:
        return self.under_run_dir("generation")

    @property
    def model_dir(self) -> Path | str:
        return self.under_run_dir("model")

    def generation_config(self, base_url: str | None = None) -> GenerationConfig:
        values = dict(self.generation)
        if self.uses_simulator:
            if base_url is None:
                raise ValueError("the simulator's base_url is known only once it runs")
            values["base_url"] = base_url
            values.setdefault("model", "simulator")
        if "run_dir" in values:
            raise UserError(f"{self._source}: [generation] run_dir: set the top-level run_dir; the pipeline keeps generation "
                            "in <run_dir>/generation")
        values["run_dir"] = str(self.generation_dir)
        if self.esco is not None:
            values.setdefault("esco", str(self.esco))
        if self.ray_address:
            values.setdefault("ray_address", self.ray_address)
        return make_config(values, source=f"{self._source}: [generation]", names=self.section_names("generation"))

    def train_config(self) -> TrainConfig:
        values = dict(self.training)
        clash = sorted({"data", "out"} & set(values))
        if clash:
            raise UserError(f"{self._source}: [training] {', '.join(clash)}: derived from the top-level run_dir "
                            "(generation -> training -> <run_dir>/model)")
        values.update(data=self.generation_dir, out=self.model_dir)
        values.setdefault("storage_path", self.under_run_dir("train"))
        values.setdefault("name", "skilltrain")
        if self.esco is not None:
            values.setdefault("esco", self.esco)
        if self.benchmark_dir is not None:
            values.setdefault("benchmark_dir", self.benchmark_dir)
        if self.ray_address:
            values.setdefault("ray_address", self.ray_address)
        try:
            return TrainConfig(**values)
        except ValidationError as exc:
            raise UserError(format_validation_error(exc, f"{self._source}: [training]", self.section_names("training"),
                                                    TrainConfig.model_fields)) from None

    def section_names(self, section: str) -> dict[str, str]:
        """How the config file spells each key of a stage section, for error messages."""
        return {key: f"{self._source}: [{section}] {key}" for key in getattr(self, section)}

    def public_json(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())


CLI_FLAGS = {"run_dir": "--run-dir", "ray_address": "--address", "esco": "--esco", "benchmark_dir": "--benchmark-dir"}


def load_pipeline_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a pipeline TOML; ``overrides`` (from the CLI) win over the file."""
    raw = read_toml(path, "pipeline config file")
    source = f"--config {path}"
    names = {key: f"{source}: [{key}]" if isinstance(value, dict) else f"{source}: {key}" for key, value in raw.items()}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    raw.update(given)
    names.update({key: CLI_FLAGS.get(key, key) for key in given})
    try:
        config = PipelineConfig(**raw)
    except ValidationError as exc:
        sections = {"simulator": SimulatorSection.model_fields, "evaluation": EvaluationSection.model_fields}
        raise UserError(format_validation_error(exc, source, names, PipelineConfig.model_fields, sections)) from None
    config._source = source
    # Validate both stages now, before any token is spent or any worker starts.
    config.generation_config(base_url=SIMULATOR_PLACEHOLDER_URL if config.uses_simulator else None)
    config.train_config()
    return config
