"""Encoders loadable by name (``--model mpnet``): pinned, verified, never downloaded at run time."""
