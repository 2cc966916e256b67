"""Job-ad text -> the sentence-like pieces the bi-encoder was trained on.

The model was trained on single generated sentences, so it ranks best when
given one requirement at a time. Job ads are rarely prose: they are lists.
So the splitter treats as boundaries, in this order:

1. line breaks (every non-empty line is its own unit);
2. list markers at the start of a line (``•``, ``-``, ``*``, ``·``, ``▪``,
   ``●``, ``◦``, ``–``, ``—``, ``>``, ``1.``, ``1)``, ``(1)``, ``a)``, ``(a)``,
   ``iv.``) and bullets used inline (``Python • SQL · Docker``);
3. semicolons;
4. sentence ends: ``.``, ``!``, ``?`` followed by whitespace and an upper-case
   letter, digit or opening quote/bracket, except after common abbreviations
   (``e.g.``, ``i.e.``, ``etc.``, ``incl.``, ``approx.``, ``Mr.`` ...) and
   single-letter initials.

Pieces longer than ``max_words`` words are cut into overlapping windows
(``max_words`` long, ``overlap`` words shared with the previous window), so a
run-on paragraph is not truncated silently by the tokenizer's limit and a
requirement on a window edge still appears whole in one window.

Skipped, because they carry no skill and only add false positives:

* empty lines and lines without a letter (``----``, ``2024``);
* lines made only of URLs, e-mail addresses and separators;
* section headings: a line of at most :data:`HEADING_MAX_WORDS` words ending in
  ``:`` (``Requirements:``, ``What you'll do:``);
* the short boilerplate list :data:`BOILERPLATE_PATTERNS` (application calls,
  equal-opportunity statements, job/reference ids, share/posted lines).

The list is deliberately small: anything that might state a requirement
stays, a spurious sentence costs less than a missed skill.
"""

from __future__ import annotations

import re

DEFAULT_MAX_WORDS = 40
DEFAULT_OVERLAP = 10
HEADING_MAX_WORDS = 5

_BULLET_CHARS = "•·\u2022\u2023\u2043\u25aa\u25ab\u25cf\u25e6\u25a0\u25a1\u2219\u27a2\u2713\u2714▪●◦■□➢✓✔"
# a list marker at the start of a line: symbol bullets, "1." "1)" "(1)" "a)" "(a)" "iv." "iv)"
_LEADING_MARKER = re.compile(
    r"^\s*(?:"
    rf"[{re.escape(_BULLET_CHARS)}\-\*–—>]+"
    r"|\(?\d{1,2}[.)](?!\d)"
    r"|\(?[a-zA-Z]\)"
    r"|\(?(?:i{1,3}|iv|v|vi{1,3}|ix|x)[.)]"
    r")\s*"
)
_INLINE_BULLET = re.compile(rf"\s+[{re.escape(_BULLET_CHARS)}]+\s+")
_SEMICOLON = re.compile(r"\s*;\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'“‘(\[])")
_LAST_TOKEN = re.compile(r"(\S+)$")
_ABBREVIATIONS = frozenset(
    "e.g. i.e. etc. incl. approx. vs. esp. min. max. no. nr. resp. dept. mr. mrs. ms. dr. prof. st. co. ltd. inc. jr. sr. fig. cf. ca.".split()
)
_HAS_LETTER = re.compile(r"[^\W\d_]")
_URL_OR_EMAIL = re.compile(r"(?:https?://\S+|www\.\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s|,;:/()\[\]<>\-–—]+")

#: Full-piece (case-insensitive) patterns of lines that never state a skill.
BOILERPLATE_PATTERNS: tuple[str, ...] = (
    # calls to apply: "Apply now!", "Click here to apply", "How to apply"
    r"(?:apply|apply now|apply today|apply here|apply online|click (?:here )?to apply|how to apply|interested\?)\W*",
    # "We are an equal opportunity employer and value diversity ..." (anywhere in the line)
    r".*\bequal (?:employment )?opportunit(?:y|ies)\b.*\bemployer\b.*|.*\bequal opportunity employer\b.*",
    # "Job ID: 12345", "Ref. no. AB-123", "Requisition #4411"
    r"(?:job|requisition|req|reference|ref|vacancy)\.?\s*(?:(?:id|no\.?|number)\s*[:#]?|[:#])\s*[\w/-]*\d[\w/-]*\W*",
    # "Share this job", "Posted 3 days ago"
    r"share (?:this )?(?:job|position|vacancy)\W*|posted \d+\+? \w+ ago\W*",
)
_BOILERPLATE = re.compile("|".join(f"(?:{p})" for p in BOILERPLATE_PATTERNS), re.IGNORECASE)


def is_boilerplate(piece: str) -> bool:
    """True for pieces that carry no skill: see the module docstring for the (short) list."""
    text = piece.strip()
    if not text or not _HAS_LETTER.search(text):
        return True
    if _URL_OR_EMAIL.search(text) and not _HAS_LETTER.search(_SEPARATORS.sub("", _URL_OR_EMAIL.sub("", text))):
        return True
    if text.endswith(":") and len(text.split()) <= HEADING_MAX_WORDS:
        return True
    return _BOILERPLATE.fullmatch(text) is not None


def _sentence_ends(line: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(line):
        before = line[start : match.start()]
        token = _LAST_TOKEN.search(before)
        word = token.group(1).lower() if token else ""
        if word in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", word) or re.fullmatch(r"(?:[a-z]\.){2,}", word):
            continue
        pieces.append(before)
        start = match.end()
    pieces.append(line[start:])
    return pieces


def window_words(piece: str, max_words: int = DEFAULT_MAX_WORDS, overlap: int = DEFAULT_OVERLAP) -> list[str]:
    """``piece`` unchanged if short enough, else overlapping windows of ``max_words`` words."""
    words = piece.split()
    if len(words) <= max_words:
        return [piece]
    step = max_words - overlap
    return [" ".join(words[start : start + max_words]) for start in range(0, len(words) - overlap, step)]


def split_sentences(text: str, max_words: int = DEFAULT_MAX_WORDS, overlap: int = DEFAULT_OVERLAP) -> list[str]:
    """The sentences of a job ad, in order, boilerplate dropped, long ones windowed."""
    if max_words < 1:
        raise ValueError("max_words must be >= 1")
    if not 0 <= overlap < max_words:
        raise ValueError("overlap must be >= 0 and < max_words")
    out: list[str] = []
    for raw_line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw_line.strip()
        if not line or is_boilerplate(line):
            continue
        for bullet_item in _INLINE_BULLET.split(line):
            item = _LEADING_MARKER.sub("", bullet_item, count=1)
            for clause in _SEMICOLON.split(item):
                for sentence in _sentence_ends(clause):
                    sentence = " ".join(sentence.split()).strip(" ,;")
                    if not sentence or is_boilerplate(sentence):
                        continue
                    out.extend(window_words(sentence, max_words, overlap))
    return out
