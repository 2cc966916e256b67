"""One exception type for every mistake a user can fix.

CLIs catch :class:`UserError` at the top level and print its message as one
line on stderr with a non-zero exit, so bad input never shows a traceback.
Anything else that escapes is a bug in this project and keeps its traceback.
"""

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input or configuration: the message names the file/field and what to do."""
