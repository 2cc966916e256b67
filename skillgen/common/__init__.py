"""The surface skillgen shares with skilltrain and cluster: bundled data, the taxonomy, storage, user
errors, Ray start-up, Ray metrics and the command-line plumbing.

``skilltrain`` imports skillgen only from here (and ``skillgen``'s own ``__all__``), never a driver's
internals, so skillgen can reorganise everything else without breaking training or extraction
(``tests/test_import_graph.py`` holds that line). Names resolve lazily, so importing this package
pulls in neither Ray nor polars.
"""

from __future__ import annotations

from skillgen.common.lazy import lazy_exports

_EXPORTS = {
    # errors and the command line
    "UserError": "skillgen.common.errors",
    "format_validation_error": "skillgen.common.errors",
    "new_parser": "skillgen.common.argparsing",
    "dispatch": "skillgen.common.argparsing",
    "lazy_exports": "skillgen.common.lazy",
    # bundled data and the taxonomy
    "BENCHMARK_DIR_HELP": "skillgen.common.paths",
    "BUNDLED_ESCO_VERSION": "skillgen.common.paths",
    "ESCO_HELP": "skillgen.common.paths",
    "default_benchmark_dir": "skillgen.common.paths",
    "is_bundled_esco": "skillgen.common.paths",
    "manifest": "skillgen.common.paths",
    "user_cache_dir": "skillgen.common.paths",
    "CACHE_DIR_ENV": "skillgen.common.paths",
    "load_skills": "skillgen.common.taxonomy",
    "resolve_esco_path": "skillgen.common.taxonomy",
    "file_sha256": "skillgen.common.taxonomy",
    # storage: local paths and object-store URIs
    "Location": "skillgen.common.storage",
    "resolve": "skillgen.common.storage",
    "is_uri": "skillgen.common.storage",
    "path_or_uri": "skillgen.common.storage",
    "staged_locally": "skillgen.common.storage",
    "polars_storage_options": "skillgen.common.storage",
    "write_atomic": "skillgen.common.atomic",
    # outputs: checked before anything is written, never mixed with a user's files
    "Output": "skillgen.common.outputs",
    "check_output_dir": "skillgen.common.outputs",
    "check_output_file": "skillgen.common.outputs",
    "check_writable_path": "skillgen.common.outputs",
    "folder_entries": "skillgen.common.outputs",
    # the run dir's layout, for readers of its shards (training, the pipeline)
    "ROWS_DIR": "skillgen.common.layout",
    "PART_GLOB": "skillgen.common.layout",
    "shard_files": "skillgen.common.layout",
    # Ray
    "init_ray": "skillgen.common.raycluster",
    "resolve_address": "skillgen.common.raycluster",
    "publish": "skillgen.common.raymetrics",
}

__all__, __getattr__, __dir__ = lazy_exports("skillgen.common", _EXPORTS)
