"""One exception type for every mistake a user can fix, and one way to word a bad config in the user's words.

CLIs catch :class:`UserError` at the top level and print its message as one
line on stderr with a non-zero exit, so bad input never shows a traceback.
Anything else that escapes is a bug in this project and keeps its traceback.
:func:`format_validation_error` turns a pydantic error into that one line, naming each field the way
the user wrote it (a flag, or a TOML key with its file) and guessing the key a typo meant.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = ["UserError", "format_validation_error", "suggest"]


class UserError(Exception):
    """Bad input or configuration: the message names the file/field and what to do."""


def suggest(name: str, known: Iterable[str]) -> str | None:
    """The known name a user probably meant: the same initials (learning_rate -> lr), a close spelling, or
    the one name that contains it (sentences -> n_sentences)."""
    known = list(known)
    initials = "".join(part[0] for part in name.split("_") if part)
    if "_" in name and initials in known:
        return initials
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    if close:
        return close[0]
    contained = [k for k in known if len(name) >= 3 and (name in k or k in name)]
    return contained[0] if len(contained) == 1 else None


def format_validation_error(exc: ValidationError, source: str, names: Mapping[str, str] | None = None,
                            known: Iterable[str] = (), nested: Mapping[str, Iterable[str]] | None = None) -> str:
    """One line naming every bad field the way the user wrote it.

    ``names`` maps a field to what the user typed: a flag (``-n``) or a TOML key with its file
    (``--config gen.toml: [limits] rpm``); other fields are named ``<source>: <field>``. An unknown key
    gets a did-you-mean from ``known`` (or, inside a section, from ``nested[section]``).
    """
    names, nested = names or {}, nested or {}
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = loc[0] if loc else ""
        where = names.get(field) or (f"{source}: {field}" if field else source)
        where += "".join((" " if where.endswith("]") else ".") + p for p in loc[1:])  # [simulator] rpm
        if err["type"] == "extra_forbidden" and isinstance(err.get("input"), dict) and len(loc) == 1:
            guess = suggest(field, known)
            msg = "unknown section" + (f"; did you mean [{guess}]?" if guess else "")
        elif err["type"] == "extra_forbidden":
            guess = suggest(loc[-1], known if len(loc) == 1 else nested.get(field, ()))
            msg = ("unknown key" if field in names else "unknown field") + (f"; did you mean {guess}?" if guess else "")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            if _shown(err):
                msg += f" (got {err['input']!r})"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def _shown(err: Any) -> bool:
    """Whether an error may repeat the value: numbers and booleans, and short strings that failed to parse as
    one or as a choice. Never other strings: a URL or a pasted key may hold a secret."""
    value = err.get("input")
    if isinstance(value, (bool, int, float)):
        return True
    parsing = err["type"].endswith("_parsing") or err["type"] in ("literal_error", "enum")
    return isinstance(value, str) and parsing and len(value) <= 40
