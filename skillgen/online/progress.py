"""Live progress for a run: a rich display on a terminal, log lines elsewhere.

Ray job logs are not terminals, so the same numbers are also emitted as one
periodic log line (``skills 120/500 ...``) whenever stdout is not a TTY or
the live display is off.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from skillgen.common.raymetrics import publish

__all__ = ["ProgressReporter", "format_line"]

log = logging.getLogger("skillgen.online.progress")


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def format_line(p: dict[str, Any]) -> str:
    return (
        f"skills {p['done']}/{p['total']} ({p['failed']} failed) | sentences {p['sentences']} | "
        f"{p['tokens_per_s']:.0f} tok/s | spend ${p['spent']:.4f} | ETA {_fmt_eta(p['eta'])} | "
        f"retries {p['retries']} | 429s {p['rate_limited']}"
    )


class ProgressReporter:
    def __init__(self, total: int, enabled: bool = True, interval_s: float = 10.0, run: str = "skillgen"):
        self.total = total
        self.run = run
        self.start = time.monotonic()
        self.interval = interval_s
        self.last_log = 0.0
        self.last_publish = 0.0
        self.live = None
        self.task = None
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.live = Progress(TextColumn("[bold]skills"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self.task = self.live.add_task("gen", total=total, info="")
            self.live.start()
        self.enabled = enabled

    def update(self, done: int, failed: int, sentences: int, tokens: float, spent: float, retries: int,
               rate_limited: int, final: bool = False, requests: int = 0) -> dict[str, Any]:
        elapsed = max(1e-6, time.monotonic() - self.start)
        rate = done / elapsed
        p = {
            "done": done, "total": self.total, "failed": failed, "sentences": sentences,
            "tokens_per_s": tokens / elapsed, "spent": spent,
            "eta": (self.total - done) / rate if rate > 0 else None, "retries": retries, "rate_limited": rate_limited,
        }
        if final or time.monotonic() - self.last_publish >= 1.0:  # the driver ticks every 0.25 s; Ray exports every few s
            self.last_publish = time.monotonic()
            publish({"skillgen_skills_done": done, "skillgen_tokens_per_s": p["tokens_per_s"], "skillgen_spend_usd": spent,
                     "skillgen_rate_limited": rate_limited, "skillgen_retries": retries, "skillgen_failures": failed,
                     "skillgen_requests": requests}, self.run)
        if self.live is not None and self.task is not None:
            self.live.update(self.task, completed=done, info=format_line(p).split(" | ", 1)[1])
        elif self.enabled and (final or time.monotonic() - self.last_log >= self.interval):
            self.last_log = time.monotonic()
            log.info(format_line(p))
        return p

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
