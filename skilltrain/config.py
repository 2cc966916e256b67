"""``TrainConfig``: every knob of a training run, in one validated object.

One pydantic model is built by the CLI (or the pipeline), checked once on the
driver, sent to every Ray Train worker as a plain dict, and written next to the
outputs (``skilltrain_config.json`` in the model dir) so a model always says how
it was made. Defaults are the paper's recipe (Decorte et al. 2023): MNRL scale
20, batch 64, AdamW 2e-5, 5% warm-up, one epoch, every sentence joined to one
random sentence of another skill.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from skillgen.common import Location, is_uri, path_or_uri, resolve

# A local path, or a URI (s3://, gs://, ...) kept as a string: run dirs, the model and Ray Train's
# storage may live on object storage when the cluster's nodes share no disk.
PathOrURI = Annotated[Union[Path, str], BeforeValidator(path_or_uri)]
CHECKPOINTS_DIR = "checkpoints"  # Ray Train's storage inside the model dir unless storage_path says otherwise


class TrainConfig(BaseModel):
    """Configuration of one ``skilltrain fit`` run (see ``skilltrain fit --help``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # inputs / outputs
    data: PathOrURI = Field(description="generation run dir (run.json, shards/part-*.parquet); path or s3:// URI")
    out: PathOrURI = Field(description="output model dir (sentence-transformers layout); path or s3:// URI")
    model: Optional[Path] = Field(None, description="encoder dir to start from, or a name (minilm, mpnet); None = bundled all-MiniLM-L6-v2")
    esco: Optional[Path] = Field(None, description="ESCO skills CSV (taxonomy pairs, validation); None = default location")
    benchmark_dir: Optional[Path] = Field(None, description="dir of {tech,house}_{split}.csv; None = default location")

    # scale
    workers: int = Field(1, ge=1, description="Ray Train workers (one process / GPU each)")
    use_gpu: bool = False
    worker_resources: Optional[dict[str, float]] = Field(
        None, description='custom Ray resources per training worker, e.g. {"worker_node": 1} to place them on labelled nodes'
    )
    cpus_per_worker: int = Field(
        0, ge=0, description="CPUs reserved per training worker, and its torch threads; 0 = the free CPUs shared among the workers"
    )
    batch_size: int = Field(64, ge=2, description="pairs per worker per step; global batch = workers * batch_size")
    gradcache_chunk: int = Field(
        0, ge=-1, description="GradCache chunk size (0 = off: one forward with graph; -1 = sized from free memory)"
    )

    # data
    taxonomy_pairs: bool = Field(False, description="add (alt label -> label) and (description -> label) pairs")
    augment_prob: float = Field(1.0, ge=0.0, le=1.0, description="probability of joining a sentence of another skill")
    max_seq_length: Optional[int] = Field(None, ge=8, description="token limit per text; None = the model's")
    min_relevance_rank: Optional[int] = Field(
        None, ge=1, description="drop generated sentences whose own skill the start encoder ranks below K among all skills "
                                "(pooled cosine; skillgen report --relevance shows the ranks); None = keep all"
    )

    # optimisation
    epochs: int = Field(1, ge=1)
    max_steps: int = Field(0, ge=0, description="stop after this many steps (0 = run all epochs)")
    lr: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    max_grad_norm: float = Field(1.0, ge=0.0, description="gradient clipping (0 = off)")
    scale: float = Field(20.0, gt=0, description="MNRL / InfoNCE logit scale (1 / temperature)")
    scoring: Literal["pooled", "token_attention"] = Field(
        "pooled", description="sentence side: one mean-pooled vector, or token embeddings each skill attends to (ConTeXT-match)"
    )
    attention_temperature: float = Field(3.0, gt=0, description="token attention: softmax temperature over token . skill dot products")
    saved_scoring: Optional[Literal["pooled", "token_attention"]] = Field(
        None, description="scoring the exported model uses; None = the training scoring (e.g. train pooled, rank with token attention)"
    )
    attention_temperatures: list[float] = Field(
        default_factory=list,
        description="token attention: after training, try each temperature and keep the best on validation (empty = keep attention_temperature)",
    )
    symmetric: bool = Field(True, description="add the skill->sentence direction to sentence->skill")
    bf16: bool = Field(True, description="bf16 autocast (GPU only; CPU always runs float32)")
    hard_negatives: int = Field(0, ge=0, description="mined hard-negative labels per pair, extra loss columns (0 = off)")
    hard_negative_pool: int = Field(10, ge=1, description="draw them from each skill's N nearest skills by the start model")
    average_alphas: list[float] = Field(
        default_factory=list,
        description="weight averaging: try alpha * trained + (1 - alpha) * start for each alpha, keep the best on validation",
    )
    seed: int = 0

    # validation, checkpoints, fault tolerance
    eval_every: int = Field(500, ge=1, description="validate on rank 0 and checkpoint every M steps")
    val_sets: list[str] = Field(default_factory=lambda: ["tech", "house"])
    log_every: int = Field(10, ge=1, description="progress log line from rank 0 every N steps")
    checkpoint_keep: int = Field(2, ge=1, description="checkpoints kept (best by validation RP@5 + latest)")
    max_failures: int = Field(3, ge=0, description="worker-group restarts from the latest checkpoint")
    storage_path: Optional[PathOrURI] = Field(None, description="Ray Train storage (path or s3:// URI); None = <out>/checkpoints")
    name: Optional[str] = Field(None, description="Ray Train run name; a rerun with the same name resumes")
    ray_address: Optional[str] = Field(None, description="Ray cluster address; None = $RAY_ADDRESS or local")

    @field_validator("val_sets")
    @classmethod
    def _sets(cls, value: list[str]) -> list[str]:
        from skilltrain.evaluation.benchmarks import SETS

        bad = [s for s in value if s not in SETS]
        if bad:
            raise ValueError(f"unknown validation set(s) {bad}; choose from {list(SETS)}")
        return value

    @field_validator("average_alphas")
    @classmethod
    def _alphas(cls, value: list[float]) -> list[float]:
        bad = [a for a in value if not 0.0 <= a <= 1.0]
        if bad:
            raise ValueError(f"weight-averaging alphas must be in [0, 1], got {bad}")
        return value

    @field_validator("attention_temperatures")
    @classmethod
    def _temperatures(cls, value: list[float]) -> list[float]:
        bad = [t for t in value if not t > 0]
        if bad:
            raise ValueError(f"attention temperatures must be > 0, got {bad}")
        return value

    def scoring_config(self) -> "ScoringConfig":
        """The scoring the model trains with (and validates with during training)."""
        from skilltrain.scoring import ScoringConfig

        return ScoringConfig(self.scoring, self.attention_temperature)

    def saved_scoring_config(self) -> "ScoringConfig":
        """The scoring the exported model is saved with (and tested with)."""
        from skilltrain.scoring import ScoringConfig

        return ScoringConfig(self.saved_scoring or self.scoring, self.attention_temperature)

    @property
    def global_batch_size(self) -> int:
        return self.workers * self.batch_size

    @property
    def run_name(self) -> str:
        return self.name or f"skilltrain-{resolve(self.out).name}"

    @property
    def storage(self) -> Path | Location:
        """Ray Train's storage: a resolved local Path, or a :class:`Location` on object storage. By default
        under the model dir (``<out>/checkpoints``), so a fit writes nothing beside ``--out``."""
        where = self.storage_path if self.storage_path is not None else f"{str(self.out).rstrip('/')}/{CHECKPOINTS_DIR}"
        return resolve(where) if is_uri(str(where)) else Path(where).resolve()

    def to_json(self) -> dict:
        """JSON-safe dict (paths as strings), the form workers receive and outputs carry."""
        return json.loads(self.model_dump_json())

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        return cls.model_validate(data)
