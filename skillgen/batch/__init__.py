"""Batch mode: the same generation as online mode, sent through OpenAI's Batch API at the batch price.

One driver process, no Ray: the provider does the work. Modules, in the order
a run uses them:

- :mod:`.state`: the batch manifest in ``<run_dir>/batch/`` (every intent,
  file id and batch id recorded atomically before the next step);
- :mod:`.jsonl`: Batch JSONL lines (``custom_id`` = request key) packed into
  input files within the provider's limits and the spend cap;
- :mod:`.api`: upload, create, poll, download and cancel with the ``openai``
  SDK, reconciling with the provider after a crash;
- :mod:`.collect`: output and error files matched by ``custom_id`` and
  validated like online responses, committed exactly once;
- :mod:`.driver`: the loop (submit, poll with backoff, collect, follow up).
"""
