"""Export a run dir as a shareable dataset (Parquet + a Hugging Face dataset card): see :mod:`skillgen.export.dataset`."""

from skillgen.export.dataset import ExportResult, export_dataset

__all__ = ["ExportResult", "export_dataset"]
