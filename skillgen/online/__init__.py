"""Online mode: one request per skill chunk over HTTP, on Ray actors.

- :mod:`.driver`: checks, takes the lease, starts the actors, drains rows into shards;
- :mod:`.scheduler`: the queue of skills, leased in chunks to workers;
- :mod:`.budget`: the run's one budget, composing :mod:`.limiter` (rate limits), :mod:`.spend` (the
  spend cap, writing the ledger) and :mod:`.lengths` (``max_tokens`` sizing); :mod:`.budget_actor` is
  its Ray actor;
- :mod:`.workers`: async LLM workers (retry, validation);
- :mod:`.messages`: the typed messages between them;
- :mod:`.progress`: the progress line and Ray metrics.
"""
