"""``skilltrain fit``: contrastive training on a generation run dir with Ray Train."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import ValidationError

from skillgen.common import UserError, check_writable_path, format_validation_error
from skillgen.common import BENCHMARK_DIR_HELP, ESCO_HELP
from skilltrain.config import TrainConfig

HELP = "train the bi-encoder on generated (sentence, skill) pairs with Ray Train (data parallel, global in-batch negatives)"
DESCRIPTION = (
    "Train a bi-encoder with a symmetric InfoNCE / multiple-negatives ranking loss (Decorte et al. 2023). "
    "Each of --workers Ray Train workers takes --batch-size pairs per step; embeddings are gathered across "
    "workers, so every sentence is scored against all workers x batch-size skill labels. No skill occurs twice "
    "in a global batch. Validation RP@5 on TECH/HOUSE (validation split) runs every --eval-every steps when the "
    "ESCO CSV and benchmark files are found, and the best checkpoint becomes --out (sentence-transformers "
    "layout). Rerunning with the same --name resumes from the latest checkpoint. Defaults are the paper's recipe."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--data", required=True, help="generation run dir (run.json, shards/part-*.parquet with skill_id, label, sentence); a path or an s3:// URI")
    io.add_argument("--out", required=True, help="output model dir, loadable with SentenceTransformer(dir) and 'skilltrain eval --model'; a path or an s3:// URI (exported locally, then uploaded)")
    io.add_argument("--model", type=Path, default=None, help="encoder dir to start from (any HF encoder or sentence-transformers dir) or a name: minilm, mpnet (installed separately, see README); default: minilm, the bundled all-MiniLM-L6-v2")
    io.add_argument("--esco", type=Path, default=None, help=ESCO_HELP)
    io.add_argument("--benchmark-dir", type=Path, default=None, help=BENCHMARK_DIR_HELP)
    io.add_argument("--config-json", type=Path, default=None, help="also write the resolved training config to this file when training is done (--out keeps it too)")
    io.add_argument("--overwrite", action="store_true",
                    help="replace the contents of a non-empty --out that is not a skilltrain model dir (a model dir fit wrote is replaced without it)")

    scale = parser.add_argument_group("scale")
    scale.add_argument("--workers", type=int, default=1, help="Ray Train workers (processes; one GPU each with --gpu)")
    scale.add_argument("--cpus-per-worker", type=int, default=0, help="CPUs reserved per worker, also its torch threads (default 0: the free CPUs shared among the workers)")
    scale.add_argument("--gpu", action="store_true", help="one GPU per worker, NCCL, bf16 autocast (default: CPU, gloo, float32)")
    scale.add_argument("--batch-size", type=int, default=64, help="pairs per worker per step; the global batch (workers x batch size) is the negative pool")
    scale.add_argument("--gradcache-chunk", type=_chunk, default=0, help="GradCache: embed in chunks of this many texts so memory does not grow with the batch (0 = off; 'auto' = sized from free memory, off when the batch fits)")
    scale.add_argument("--address", dest="ray_address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    scale.add_argument("--ray-address", dest="ray_address", default=None, help=argparse.SUPPRESS)  # old spelling

    data = parser.add_argument_group("data")
    data.add_argument("--taxonomy-pairs", action="store_true", help="also train on (alternative label -> label) and (description -> label) pairs from the ESCO CSV")
    data.add_argument("--augment-prob", type=float, default=1.0, help="probability of joining each sentence to a random sentence of another skill (before or after it); that skill is then not a negative")
    data.add_argument("--max-seq-length", type=int, default=None, help="token limit per text (default: the model's, 256 for MiniLM)")
    data.add_argument("--min-relevance-rank", type=int, default=None, metavar="K",
                      help="drop generated sentences whose own skill the start encoder ranks below K among all skills of the "
                           "taxonomy (pooled cosine; what 'skillgen report --relevance' shows); logs how many and for which "
                           "skills (default: keep all)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=1, help="passes over the pairs")
    opt.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = all epochs)")
    opt.add_argument("--lr", type=float, default=2e-5, help="AdamW peak learning rate")
    opt.add_argument("--warmup-ratio", type=float, default=0.05, help="fraction of steps of linear warm-up, then linear decay to 0")
    opt.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (not on biases / LayerNorm)")
    opt.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm (0 = off)")
    opt.add_argument("--scale", type=float, default=20.0, help="similarity scale (inverse temperature) of the loss")
    opt.add_argument("--one-way", action="store_true", help="only sentence->skill (default: symmetric, adds skill->sentence)")
    opt.add_argument("--no-bf16", action="store_true", help="keep float32 on GPU")
    opt.add_argument("--seed", type=int, default=0, help="seed for shuffling, augmentation and dropout")
    opt.add_argument("--hard-negatives", type=int, default=0, help="per pair, this many extra negative skills drawn from its skill's nearest skills by the start model (0 = off)")
    opt.add_argument("--hard-negative-pool", type=int, default=10, help="the nearest skills mined per skill for --hard-negatives")
    opt.add_argument("--scoring", choices=["pooled", "token_attention"], default="pooled",
                     help="sentence side: one pooled vector, or token embeddings each skill attends to (ConTeXT-match)")
    opt.add_argument("--attention-temperature", type=float, default=3.0, help="token attention: softmax temperature (training)")
    opt.add_argument("--saved-scoring", choices=["pooled", "token_attention"], default=None,
                     help="scoring the exported model ranks with (default: --scoring); e.g. train pooled, rank with token attention")
    opt.add_argument("--attention-temperatures", default="",
                     help="token attention: comma-separated temperatures to try after training, best on validation is saved; e.g. 1,2,3,5")
    opt.add_argument("--average-alphas", default="", help="weight averaging with the start model: comma-separated alphas to try (alpha * trained + (1 - alpha) * start), best on validation is exported; e.g. 0.25,0.5,0.75")

    run = parser.add_argument_group("validation, checkpoints, fault tolerance")
    run.add_argument("--eval-every", type=int, default=500, help="validate (rank 0) and checkpoint every this many steps, and at the end")
    run.add_argument("--val-sets", default="tech,house", help="validation benchmark sets (comma-separated)")
    run.add_argument("--log-every", type=int, default=10, help="progress line (step, loss, samples/s, ETA, last validation) every this many steps")
    run.add_argument("--keep", type=int, default=2, help="checkpoints kept: the best by validation RP@5 and the latest")
    run.add_argument("--max-failures", type=int, default=3, help="restarts of the worker group from the latest checkpoint after a failure")
    run.add_argument("--storage", default=None, help="Ray Train storage for checkpoints, a path or an s3:// URI (default: OUT/checkpoints; shared or object storage on a multi-node cluster; S3 keys from AWS_* variables)")
    run.add_argument("--name", default=None, help="run name under --storage; rerunning with the same name resumes (default: skilltrain-<out dir name>)")


def _chunk(text: str) -> int:
    if text.strip().lower() == "auto":
        return -1
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of texts or 'auto', got '{text}'") from None


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated numbers, got '{text}'") from None


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    try:
        return TrainConfig(
            data=args.data, out=args.out, model=args.model, esco=args.esco, benchmark_dir=args.benchmark_dir,
            workers=args.workers, cpus_per_worker=args.cpus_per_worker, use_gpu=args.gpu, batch_size=args.batch_size, gradcache_chunk=args.gradcache_chunk,
            ray_address=args.ray_address, taxonomy_pairs=args.taxonomy_pairs, augment_prob=args.augment_prob,
            max_seq_length=args.max_seq_length, min_relevance_rank=args.min_relevance_rank, epochs=args.epochs, max_steps=args.max_steps, lr=args.lr,
            warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
            scale=args.scale, symmetric=not args.one_way, bf16=not args.no_bf16, seed=args.seed,
            hard_negatives=args.hard_negatives, hard_negative_pool=args.hard_negative_pool,
            average_alphas=_floats(args.average_alphas, "--average-alphas"),
            scoring=args.scoring, attention_temperature=args.attention_temperature, saved_scoring=args.saved_scoring,
            attention_temperatures=_floats(args.attention_temperatures, "--attention-temperatures"),
            eval_every=args.eval_every, val_sets=[s.strip().lower() for s in args.val_sets.split(",") if s.strip()],
            log_every=args.log_every, checkpoint_keep=args.keep, max_failures=args.max_failures,
            storage_path=args.storage, name=args.name,
        )
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, "skilltrain fit", flag_names())) from None


# TrainConfig fields whose flag is not "--" + the field name with dashes
FLAG_OF_FIELD = {"use_gpu": "--gpu", "checkpoint_keep": "--keep", "storage_path": "--storage", "symmetric": "--one-way",
                 "bf16": "--no-bf16", "ray_address": "--address"}


def flag_names() -> dict[str, str]:
    """TrainConfig field -> the flag that sets it, for error messages in the user's words."""
    return {name: FLAG_OF_FIELD.get(name, "--" + name.replace("_", "-")) for name in TrainConfig.model_fields}


def run(args: argparse.Namespace) -> int:
    from skilltrain.training.fit import fit

    cfg = config_from_args(args)
    if args.config_json is not None:
        check_writable_path(args.config_json.expanduser(), "--config-json", "file")
    result = fit(cfg, overwrite=args.overwrite)
    if args.config_json is not None:
        try:
            args.config_json.expanduser().parent.mkdir(parents=True, exist_ok=True)
            args.config_json.expanduser().write_text(json.dumps(cfg.to_json(), indent=2))
        except OSError as exc:
            raise UserError(f"--config-json {args.config_json}: cannot write the training config ({exc.strerror}); "
                            f"the model is saved in {result.out_dir}") from None
    val = result.best_metrics.get("val_rp5")
    print(
        f"model: {result.out_dir} (best step {result.best_step}"
        + (f", validation RP@5 {val:.2f}" if val is not None else ", no validation")
        + f") in {result.wall_s:.0f} s"
    )
    return 0
