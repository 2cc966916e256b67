"""``skillgen status RUN_DIR``: progress, cost and failures of a run dir, without Ray."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "summarise a run dir: skills done, sentences, cost, failures by class"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the --run-dir of a generation run")
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.add_argument("--failures", type=int, default=5, help="show up to this many failure messages")


def status(run_dir: str | Path, show: int = 5) -> dict:
    import polars as pl

    from skillgen.common.errors import UserError
    from skillgen.rundir.runstate import read_run_json
    from skillgen.rundir.sinks import read_failures, read_rows

    meta = read_run_json(run_dir)
    if meta is None:
        raise UserError(f"{run_dir}: no run.json (not a skillgen run dir)")
    n = int(meta["config"]["n_sentences"])
    rows = read_rows(run_dir)
    raw = read_rows(run_dir, dedupe=False)
    fails = read_failures(run_dir)
    per_key = rows.group_by("request_key").len() if rows.height else pl.DataFrame({"request_key": [], "len": []})
    complete = int((per_key["len"] >= n).sum()) if per_key.height else 0
    last = (meta.get("history") or [{}])[-1].get("summary", {})
    batches = batch_status(run_dir)
    policy = meta["config"].get("unknown_outcome", "worst_case")
    return {
        "run_dir": str(run_dir),
        "model": meta["config"]["model"],
        "prompt_version": meta.get("prompt_version"),
        "fingerprint": meta.get("fingerprint"),
        "sentences_per_skill": n,
        "skills_complete": complete,
        "skills_partial": int(per_key.height - complete),
        "skills_failed": int(fails.height),
        "skills_selected_last_run": last.get("skills_selected"),
        "sentences": rows.height,
        "duplicate_rows_on_disk": raw.height - rows.height,
        "prompt_tokens": int(raw.unique("request_key", keep="first")["prompt_tokens"].sum() or 0) if raw.height else 0,
        "cost_usd": float((raw["cost_usd"].sum() or 0) + (fails["cost_usd"].fill_null(0).sum() if fails.height else 0)
                          + (batches["unattributed_usd"] if batches else 0.0)),
        "reconciliation": reconcile(run_dir, meta, policy),
        "failures_by_class": dict(fails.group_by("error_class").len().iter_rows()) if fails.height else {},
        "failure_examples": fails.head(show).select("label", "error_class", "message").to_dicts() if fails.height else [],
        "last_run": last,
        "invocations": len(meta.get("history") or []),
        "batches": batches,
    }


def batch_status(run_dir: str | Path) -> dict | None:
    """Batch mode: batches by status, the open ones, and money they hold (None for an online-only run dir)."""
    from collections import Counter

    from skillgen.batch.state import load_manifest

    manifest = load_manifest(run_dir)
    if manifest is None:
        return None
    open_entries = manifest.open_entries()
    return {
        "by_status": dict(Counter(e.status for e in manifest.entries)),
        "open": [{"seq": e.seq, "batch_id": e.batch_id, "status": e.status, "request_counts": e.request_counts}
                 for e in open_entries],
        "held_worst_case_usd": sum(e.worst_case_usd for e in open_entries),
        "unattributed_usd": manifest.spent_unattributed(),
    }


def reconcile(run_dir: str | Path, meta: dict, policy: str) -> dict:
    """Spend three ways: the ledger (what was sent), the rows + failure records (what arrived and was
    kept), and the estimates made before each invocation (upper bounds for what was then left)."""
    from skillgen.rundir.ledger import ledger_totals
    from skillgen.common.storage import resolve
    from skillgen.rundir.sinks import FAILURE_SCHEMA, FAILURES_DIR, ROW_SCHEMA, ROWS_DIR, read_parts

    ledger = ledger_totals(run_dir, policy)
    rows = read_parts(resolve(run_dir) / ROWS_DIR, ROW_SCHEMA)
    fails = read_parts(resolve(run_dir) / FAILURES_DIR, FAILURE_SCHEMA)
    by_rows = float((rows["cost_usd"].sum() or 0.0) + (fails["cost_usd"].fill_null(0).sum() or 0.0))
    estimates = [h.get("summary", {}).get("estimated_cost_usd") or 0.0 for h in meta.get("history") or []]
    return {
        "ledger": ledger.to_dict(),
        "rows_and_failures_usd": by_rows,
        # paid for but not (or no longer) in any row: retries, released skills, lost or duplicate answers
        "not_in_rows_usd": ledger.known_usd - by_rows,
        "estimates_usd": sum(estimates),
        "invocations": len(estimates),
    }


def format_reconciliation(rec: dict) -> list[str]:
    led = rec["ledger"]
    outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(led["by_outcome"].items())) or "none"
    return [
        f"ledger       ${led['spent_usd']:.4f} = known ${led['known_usd']:.4f} + {led['unknown_attempts']} unknown "
        f"outcomes ${led['unknown_usd']:.4f} ({led['policy']}) | {led['attempts']} attempts ({outcomes}) | "
        f"tokens {led['prompt_tokens']} prompt + {led['completion_tokens']} completion",
        f"reconcile    rows + failure records account for ${rec['rows_and_failures_usd']:.4f}; "
        f"known spend not in rows ${rec['not_in_rows_usd']:.4f}; estimates of {rec['invocations']} invocations "
        f"up to ${rec['estimates_usd']:.4f}",
    ]


def run(args: argparse.Namespace) -> int:
    info = status(args.run_dir, args.failures)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"run dir      {info['run_dir']} (model {info['model']}, prompt {info['prompt_version']}, fingerprint {info['fingerprint']})")
    sel = info["skills_selected_last_run"]
    print(f"skills       {info['skills_complete']} complete, {info['skills_partial']} partial, {info['skills_failed']} failed"
          + (f" of {sel} selected in the last run" if sel is not None else ""))
    print(f"sentences    {info['sentences']} ({info['sentences_per_skill']} per skill)")
    print(f"cost         ${info['reconciliation']['ledger']['spent_usd']:.4f} (by the ledger)")
    for line in format_reconciliation(info["reconciliation"]):
        print(line)
    last = info["last_run"]
    if last:
        print(f"last run     {last.get('status')}: {last.get('requests')} requests, {last.get('retries')} retries, "
              f"estimate up to ${last.get('estimated_cost_usd', 0):.4f}, actual ${last.get('actual_cost_usd', 0):.4f}")
    batches = info["batches"]
    if batches:
        print("batches      " + ", ".join(f"{k}: {v}" for k, v in sorted(batches["by_status"].items()))
              + f" (open ones hold up to ${batches['held_worst_case_usd']:.4f}; ${batches['unattributed_usd']:.4f} "
                "paid for answers without a valid sentence)")
        for b in batches["open"]:
            counts = b["request_counts"]
            print(f"  - batch {b['seq']} {b['batch_id'] or '(not created yet)'}: {b['status']}, "
                  f"{counts.get('completed', 0)}/{counts.get('total', 0)} done, {counts.get('failed', 0)} failed")
    if info["failures_by_class"]:
        print("failures     " + ", ".join(f"{k}: {v}" for k, v in sorted(info["failures_by_class"].items())))
        for ex in info["failure_examples"]:
            print(f"  - {ex['label']}: {ex['error_class']}: {ex['message']}")
    return 0
