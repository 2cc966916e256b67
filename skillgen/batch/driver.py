"""The batch-mode driver: submit, poll with backoff, collect, follow up, until every skill is done.

One loop, read top to bottom in :meth:`BatchRun.loop`:

1. bring every open manifest entry forward: start it (upload, create; with
   reconciliation if a previous driver left it half-done), poll it, and
   collect it once terminal (:mod:`.collect`);
2. work out what is still missing from the rows on disk (the same
   :func:`skillgen.plan.build_tasks` as online mode, after the same
   :func:`skillgen.plan.plan_run` at the start); skills out of attempts
   (``max_content_attempts`` answers or ``batch_max_rounds`` batches) get a
   failure record;
3. pack the rest into input files within the request/byte limits, the
   enqueued-token cap and the spend cap, and submit them (intent recorded
   first);
4. sleep, backing off from ``batch_poll_min_s`` to ``batch_poll_max_s``
   while nothing changes.

Money: every line is an attempt in the run dir's ledger, written before its
batch is created: it holds its worst case (prompt + ``max_tokens`` at the
batch price) against ``spend_cap_usd`` while its batch is open; once the batch
is collected its usage (or, for a line never processed, ``expired`` /
``batch_cancelled`` / ``batch_failed`` at $0) replaces it. The spend cap is
the online rule: ledger spend plus the worst case of what is to be sent. ``skillgen batch cancel`` leaves a marker
the driver sees: it submits nothing more, cancels what it still starts, and
returns once every batch is terminal and collected. Ctrl-C leaves the batches
running at the provider; a rerun polls the same batches.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from skillgen.batch.api import BatchApi
from skillgen.batch.collect import Collected, collect_lines, shard_tag, unprocessed_outcome
from skillgen.batch.jsonl import BatchLine, build_line, pack
from skillgen.batch.state import BatchEntry, Manifest, load_manifest, save_manifest, seq_name
from skillgen.common.errors import UserError
from skillgen.common.raymetrics import publish
from skillgen.config import GenerationConfig
from skillgen.llm.pricing import config_batch_price
from skillgen.plan import RunPlan, SkillTask, build_tasks, plan_run
from skillgen.rundir.ledger import BATCH_WORKER, Outcome, OutcomeEvent, SentEvent, read_ledger
from skillgen.rundir.rundir import RunDir
from skillgen.rundir.sinks import FailureRecord
from skillgen.summary import RequestCounters, RunSummary, StopReason, Tally, close_invocation

__all__ = ["BatchRun", "BatchSnapshot", "attempt_id", "reconcile_ledger", "run_batch"]

log = logging.getLogger(__name__)


def attempt_id(run_id: str, seq: int, custom_id: str) -> str:
    """A batch line's ledger attempt id: the run, the batch and the line, so replays find the same one."""
    return f"{run_id}-{seq:05d}-{custom_id}"


class BatchRun:
    """State of one invocation of batch mode on one run dir."""

    def __init__(self, config: GenerationConfig, run_dir: RunDir, api: BatchApi, manifest: Manifest, skills: list,
                 verbose: bool):
        self.config = config
        self.run_dir = run_dir
        self.api = api
        self.manifest = manifest
        self.skills = skills
        self.price = config_batch_price(config)
        self.verbose = verbose
        self.failures = run_dir.failure_writer(flush_rows=10**9, flush_seconds=1e9)
        self.ledger = run_dir.ledger_writer()
        self.requests: dict[int, dict[str, dict[str, Any]]] = {}  # seq -> custom_id -> request info
        self.queue: list[BatchLine] = []
        self.dirty = True  # rows changed: recompute what is missing
        self.spent = 0.0  # by the ledger (open lines at worst case), as of the last recompute or submission
        self.stop_reason: StopReason | None = None
        self.totals = RequestCounters()  # this invocation's collected lines
        self.rows_written = 0

    # ---- the loop ------------------------------------------------------------------

    def loop(self) -> None:
        interval = self.config.batch_poll_min_s
        while True:
            if self.run_dir.lost:
                raise UserError(f"{self.run_dir}: another process took the run dir lease over; stopped writing")
            changed = self.advance_open()
            if self.run_dir.cancel_requested() and self.stop_reason is None:
                self.stop_reason = StopReason.CANCELLED
                changed = self.advance_open() or changed  # cancel what this driver started meanwhile
            if self.dirty:
                self.refresh_queue()
            if self.stop_reason is None and self.queue:
                changed = self.submit() or changed
            if not self.manifest.open_entries():
                return
            interval = self.config.batch_poll_min_s if changed else min(self.config.batch_poll_max_s, interval * 1.5)
            if changed:
                self.report()
            time.sleep(interval)

    # ---- 1. open entries -------------------------------------------------------------

    def advance_open(self) -> bool:
        changed = False
        for entry in self.manifest.open_entries():
            if entry.batch_id is None:
                self.start(entry, reconcile=True)
                changed = True
            elif not entry.terminal:
                changed = self.poll(entry) or changed
            if self.stop_reason == StopReason.CANCELLED and entry.status in ("validating", "in_progress", "finalizing"):
                self.update(entry, self.api.cancel(entry.batch_id))
            if entry.terminal:
                self.collect(entry)
                changed = True
        return changed

    def start(self, entry: BatchEntry, reconcile: bool) -> None:
        """Upload and create, recording each id as soon as it exists."""
        if entry.file_id is None:
            data = self.run_dir.batch_file(seq_name("input", entry.seq, "jsonl")).read_bytes()
            entry.file_id = self.api.upload(data, entry.filename, reconcile)
            entry.status = "uploaded"
            save_manifest(self.run_dir, self.manifest)
        batch = self.api.create(entry.file_id, self.manifest.run_id, entry.seq, reconcile)
        entry.batch_id = batch.id
        self.update(entry, batch)
        log.info("batch %d submitted: %s (%d requests, file %s)", entry.seq, batch.id, entry.requests, entry.file_id)

    def poll(self, entry: BatchEntry) -> bool:
        before = (entry.status, dict(entry.request_counts))
        self.update(entry, self.api.retrieve(entry.batch_id))
        return (entry.status, entry.request_counts) != before

    def update(self, entry: BatchEntry, batch: Any) -> None:
        entry.status = batch.status
        counts = batch.request_counts
        entry.request_counts = {"total": counts.total, "completed": counts.completed, "failed": counts.failed} if counts else {}
        entry.output_file_id = batch.output_file_id
        entry.error_file_id = batch.error_file_id
        if batch.errors and batch.errors.data:
            entry.errors = [{"code": e.code, "message": e.message, "line": e.line} for e in batch.errors.data]
        save_manifest(self.run_dir, self.manifest)

    # ---- collection ------------------------------------------------------------------

    def request_info(self, seq: int) -> dict[str, dict[str, Any]]:
        if seq not in self.requests:
            self.requests[seq] = json.loads(self.run_dir.batch_file(seq_name("requests", seq, "json")).read_text())
        return self.requests[seq]

    def download(self, seq: int, kind: str, file_id: str | None) -> str:
        """A result file's text, cached in the run dir (collection can be replayed without the provider)."""
        if file_id is None:
            return ""
        name = seq_name(kind, seq, "jsonl")
        if not self.run_dir.batch_file(name).exists():
            self.run_dir.write_batch_file(name, self.api.content(file_id))
        return self.run_dir.batch_file(name).read_text()

    def collect(self, entry: BatchEntry) -> None:
        requests = self.request_info(entry.seq)
        res = collect_lines(self.config, self.price, requests, self.download(entry.seq, "output", entry.output_file_id),
                            self.download(entry.seq, "errors", entry.error_file_id))
        if entry.status == "failed":
            self.on_failed(entry, requests)
        if self.run_dir.write_rows_once(shard_tag(self.manifest.run_id, entry.seq), res.rows):
            self.rows_written += len(res.rows)
        self.settle(entry, requests, res)  # after the rows: "billed" in the ledger means kept on disk
        m = self.manifest
        for key in {info["request_key"] for info in requests.values()}:
            m.rounds[key] = m.rounds.get(key, 0) + 1
        for key in res.answered:
            m.attempts[key] = m.attempts.get(key, 0) + 1
        m.problems.update(res.problems)
        entry.collected, entry.cost_usd, entry.unattributed_usd = True, res.cost_usd, res.unattributed_usd
        save_manifest(self.run_dir, m)  # after rows and ledger: a crash in between replays both, writing each once
        self.totals.add(RequestCounters(requests=len(res.answered), prompt_tokens=res.prompt_tokens,
                                        completion_tokens=res.completion_tokens, truncated=res.truncated,
                                        cost_usd=res.cost_usd))
        self.dirty = True

    def settle(self, entry: BatchEntry, requests: dict[str, dict[str, Any]], res: Collected) -> None:
        """Every line of a collected batch gets its outcome in the ledger (a replay writes the same ones)."""
        ended = unprocessed_outcome(entry.status)
        for cid in requests:
            line = res.outcomes.get(cid)
            event = (OutcomeEvent(attempt_id(self.manifest.run_id, entry.seq, cid), Outcome(ended)) if line is None else
                     OutcomeEvent(attempt_id(self.manifest.run_id, entry.seq, cid), line.outcome, line.prompt_tokens,
                                  line.completion_tokens, line.cost_usd))
            self.ledger.add(event)
        self.ledger.flush()

    def on_failed(self, entry: BatchEntry, requests: dict[str, dict[str, Any]]) -> None:
        codes = {e.get("code") for e in entry.errors}
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in entry.errors)[:500] or "no reason given"
        log.warning("batch %d (%s) failed: %s", entry.seq, entry.batch_id, text)
        for info in requests.values():
            self.manifest.problems[info["request_key"]] = f"batch failed: {text}"
        if "token_limit_exceeded" in codes:
            # The provider's queue is smaller than assumed: submit at most half of what failed at once from now on.
            known = self.manifest.learned_token_cap or entry.tokens
            self.manifest.learned_token_cap = max(1, min(known, entry.tokens) // 2)
            log.warning("enqueued-token limit hit: at most %d tokens in open batches from now on",
                        self.manifest.learned_token_cap)

    # ---- 2. what is missing ------------------------------------------------------------

    def open_keys(self) -> set[str]:
        return {info["request_key"] for e in self.manifest.open_entries() for info in self.request_info(e.seq).values()}

    def refresh_queue(self) -> None:
        """Recompute the lines to send from the rows on disk; skills out of attempts become failure records."""
        self.dirty = False
        self.spent = self.run_dir.spend(self.config.unknown_outcome).total_usd
        tasks, _, _ = build_tasks(self.config, self.skills, self.run_dir.progress())
        busy = self.open_keys()
        m, cfg = self.manifest, self.config
        self.queue = []
        for task in tasks:
            key = task.request_key
            if key in busy:
                continue
            answers, rounds = m.attempts.get(key, 0), m.rounds.get(key, 0)
            if rounds and cfg.batch_shortfall == "online":
                continue  # left for online mode, under the same lease (skillgen.generation)
            if answers >= cfg.max_content_attempts or rounds >= cfg.batch_max_rounds:
                self.fail(task, "validation" if answers >= cfg.max_content_attempts else "batch_unanswered",
                          f"{answers} answers in {rounds} batches: {m.problems.get(key, 'no answer')}", answers)
                continue
            self.queue.append(build_line(cfg, task, answers, self.price))
        self.failures.flush()

    def fail(self, task: SkillTask, error_class: str, message: str, attempts: int) -> None:
        self.failures.add([FailureRecord.of(task.skill, task.request_key, error_class, message, attempts,
                                            len(task.missing), 0.0)])

    # ---- 3. submission -------------------------------------------------------------------

    def rooms(self) -> tuple[float, float]:
        """Headroom for a new batch: enqueued tokens, and spend (the ledger holds open lines at worst case)."""
        open_entries = self.manifest.open_entries()
        caps = [c for c in (self.config.batch_max_enqueued_tokens, self.manifest.learned_token_cap) if c]
        tokens = min(caps) - sum(e.tokens for e in open_entries) if caps else math.inf
        cap = self.config.spend_cap_usd
        spend = cap - self.spent if cap is not None else math.inf
        return tokens, spend

    def submit(self) -> bool:
        submitted = False
        while self.queue:
            token_room, spend_room = self.rooms()
            p = pack(self.queue, self.config.batch_max_requests, self.config.batch_max_bytes, token_room, spend_room)
            if p is None:
                first = self.queue[0]
                if first.worst_case_usd > spend_room:
                    if not self.manifest.open_entries():
                        self.stop_reason = StopReason.SPEND_CAP
                elif not self.manifest.open_entries():
                    raise UserError(f"one request needs {first.tokens} enqueued tokens, more than the enqueued-token cap; "
                                    "raise --batch-max-enqueued-tokens or lower --max-tokens")
                return submitted
            self.queue = self.queue[len(p.lines):]
            self.start(self.record_intent(p.lines, p.bytes, p.tokens, p.worst_case_usd), reconcile=False)
            submitted = True
        return submitted

    def record_intent(self, lines: list[BatchLine], size: int, tokens: int, worst: float) -> BatchEntry:
        """Input and request files, then every line in the ledger at worst case, then the manifest entry: a
        batch can be created only from an entry, so the ledger knows each line before the provider can bill it."""
        m = self.manifest
        seq = max((e.seq for e in m.entries), default=0) + 1
        self.run_dir.write_batch_file(seq_name("input", seq, "jsonl"), "".join(line.text for line in lines))
        requests = {line.custom_id: line.request_info() for line in lines}
        self.run_dir.write_batch_file(seq_name("requests", seq, "json"), json.dumps(requests, indent=2, sort_keys=True))
        self.requests[seq] = requests
        for line in lines:
            prompt = line.tokens - self.config.max_tokens
            self.ledger.add(SentEvent(attempt_id(m.run_id, seq, line.custom_id), line.request_key,
                                      m.attempts.get(line.request_key, 0), BATCH_WORKER, prompt, self.config.max_tokens,
                                      line.worst_case_usd, self.price.cost(prompt, 0)))
        self.ledger.flush()
        self.spent += worst
        entry = BatchEntry(seq=seq, filename=f"skillgen-{m.run_id}-{seq:05d}.jsonl", requests=len(lines), bytes=size,
                           tokens=tokens, worst_case_usd=worst)
        m.entries.append(entry)
        save_manifest(self.run_dir, m)
        return entry

    # ---- progress ------------------------------------------------------------------------

    def report(self) -> None:
        entries = self.manifest.entries
        states = Counter(e.status for e in entries if not e.collected)
        counts = Counter()
        for e in entries:
            if not e.collected:
                counts.update(e.request_counts)
        held = sum(e.worst_case_usd for e in self.manifest.open_entries())
        self.publish()
        log.log(logging.INFO if self.verbose else logging.DEBUG,
                "batches open: %s | requests %d/%d done, %d failed | spent $%.4f, up to $%.4f held by open batches",
                dict(states) or "none", counts["completed"], counts["total"], counts["failed"], self.spent, held)

    def publish(self, extra: dict[str, float] | None = None) -> None:
        """The batch gauges (run-dir totals, as ``skillgen_spend_usd`` is) on Ray's metrics, when connected."""
        try:
            entries = self.manifest.entries
            done = sum(e.requests if e.collected else
                       e.request_counts.get("completed", 0) + e.request_counts.get("failed", 0) for e in entries)
            values = {"skillgen_batches_open": len(self.manifest.open_entries()),
                      "skillgen_batch_lines": sum(e.requests for e in entries), "skillgen_batch_lines_done": done,
                      "skillgen_spend_usd": self.spent, **(extra or {})}
        except Exception as exc:  # noqa: BLE001 - gauges must never break a paid run
            log.debug("batch gauges not computed: %s", exc)
            return
        publish(values, self.run_dir.root.name)


def reconcile_ledger(run_dir: RunDir, manifest: Manifest) -> int:
    """Lines a killed driver put in the ledger without recording their batch in the manifest were never sent
    (a batch is created only from a manifest entry): close them as cancelled before send. Returns how many."""
    ledger = read_ledger(run_dir.root)
    known = {f"{manifest.run_id}-{e.seq:05d}-" for e in manifest.entries}
    orphans = [a for a in ledger.filter((ledger["worker"] == BATCH_WORKER) & (ledger["outcome"] == Outcome.PENDING.value))
               ["attempt_id"].to_list() if a[:len(manifest.run_id) + 7] not in known]
    if orphans:
        writer = run_dir.ledger_writer()
        for aid in orphans:
            writer.add(OutcomeEvent(aid, Outcome.CANCELLED))
        writer.flush()
    return len(orphans)


def run_batch(config: GenerationConfig, run_dir: RunDir, progress: bool = True) -> RunSummary:
    """Generate sentences through the Batch API into an open run dir (its lease held); resumable."""
    price = config_batch_price(config)  # unknown model: UserError before anything else
    manifest = load_manifest(run_dir, create=True)
    run_dir.clear_cancel()  # a new run resumes what a cancel stopped
    reconcile_ledger(run_dir, manifest)  # before planning: the spend cap reads the ledger
    plan = plan_run(config, price, run_dir)
    if config.retry_failures:
        for key in plan.progress.failed:
            manifest.attempts.pop(key, None)
            manifest.rounds.pop(key, None)
    _connect_for_metrics(config)
    api = BatchApi(config)
    run = BatchRun(config, run_dir, api, manifest, plan.skills, progress)
    try:
        run.loop()
    except KeyboardInterrupt:
        run.stop_reason = StopReason.INTERRUPTED
        log.warning("interrupted: submitted batches keep running at the provider; rerun the same command to collect them")
    finally:
        run.failures.flush()
        api.close()
    return _finish(run, plan)


def _connect_for_metrics(config: GenerationConfig) -> None:
    """Under ``ray job submit`` (``RAY_ADDRESS`` set) or with ``--address``, join the cluster so the batch
    gauges reach its dashboard and Prometheus. Batch mode needs no Ray otherwise: a plain local run starts
    none, and a cluster that cannot be reached costs the run its gauges, not its batches."""
    from skillgen.common.raycluster import init_ray, resolve_address

    if resolve_address(config.ray_address) == "local":
        return  # (a pipeline that started local Ray itself is connected already: publish() sees it)
    try:  # init_ray's defaults: a batch run that goes online afterwards (batch_shortfall) keeps its worker logs
        init_ray(config.ray_address)
    except Exception as exc:  # noqa: BLE001 - any failure to join costs the gauges only, never the paid batches
        log.warning("no Ray metrics for this batch run: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@dataclass(frozen=True)
class BatchSnapshot:
    """Batch mode's part of the run summary (``RunSummary.budget``): its batches by status."""

    batches: dict[str, int] = field(default_factory=dict)
    stop_reason: str | None = None
    mode: str = "batch"


def _finish(run: BatchRun, plan: RunPlan) -> RunSummary:
    """Skills count as completed or failed by what the run dir holds now (batches collected by earlier
    drivers included), so a resumed run reports the same as one that never stopped."""
    state = run.run_dir.progress()
    keys = {t.request_key for t in plan.tasks}
    completed = sum(1 for k in keys if len(state.have.get(k, {})) >= run.config.n_sentences)
    failed = len(keys & state.failed)
    tally = Tally(completed, failed, run.rows_written, run.failures.written, run.totals)
    snapshot = BatchSnapshot(dict(Counter(e.status for e in run.manifest.entries)), run.stop_reason)
    summary = close_invocation(run.run_dir, plan, tally, mode="batch", stop_reason=run.stop_reason,
                               budget=asdict(snapshot))
    run.publish({"skillgen_skills_done": completed, "skillgen_failures": failed,
                 "skillgen_requests": run.totals.requests, "skillgen_spend_usd": summary.total_cost_usd})
    return summary
