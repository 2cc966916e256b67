"""The run dir: everything a generation run persists, on local disk or object storage.

- :mod:`.lease`: one writer per run dir;
- :mod:`.runstate`: ``run.json`` (fingerprint, invocations) and progress read back from shards;
- :mod:`.sinks`: row and failure-record shards (atomic Parquet files);
- :mod:`.ledger`: every request that may have been paid for.
"""
