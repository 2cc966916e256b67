"""Helpers shared by the test files (imported as ``helpers.<module>``: pytest puts ``tests/`` on sys.path).

Each helper is defined once here; a test file holds only tests and what no other file needs. See
``tests/README.md`` for what each module offers.
"""
