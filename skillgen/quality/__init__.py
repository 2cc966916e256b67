"""Data-quality report of a generation run dir (``skillgen report RUN_DIR``): see :mod:`skillgen.quality.data_report`."""

from skillgen.quality.data_report import QualityReport, quality_report

__all__ = ["QualityReport", "quality_report"]
