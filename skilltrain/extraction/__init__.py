"""Extraction: job-ad text to sentences to top-k ESCO skills, in one process or with Ray Data."""
