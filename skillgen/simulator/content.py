"""What the simulated model says: job-ad sentences grounded in the prompt's skill.

The simulator sees only the prompt text, as a real LLM would. It reads the
field lines of :mod:`skillgen.llm.prompts` (``Write N``, ``Skill:``,
``Description:``, ``Alternative labels:``, and the "do not repeat" list)
tolerantly, and composes sentences from the label, the alternative labels
and the description's own verb and noun phrases through the families in
:mod:`skillgen.simulator.templates`. The result carries real signal about the
skill (its words, its synonyms, what one does with it) in varied contexts, so
a bi-encoder trained on simulator output learns something, and sentence
lengths vary the way an LLM's do. A prompt that is not a skillgen prompt gets
a generic short answer.
"""

from __future__ import annotations

import functools
import random
import re
import string
from dataclasses import dataclass

from skillgen.simulator import templates as T
from skillgen.simulator.lexicon import AMBIGUOUS, VERBS, article, gerund

__all__ = ["DEFAULT_N", "GENERIC_ANSWERS", "MAX_N", "MAX_PHRASE_WORDS", "MAX_WORDS", "NONE_VALUES",
           "NOUNISH_ENDINGS", "Phrase", "SkillPrompt", "SkillWriter", "TRAILING_STOPWORDS", "generic_answer",
           "parse_prompt", "to_phrase", "writer_for"]

DEFAULT_N = 10  # when a prompt names a skill but no count
MAX_N = 200
MAX_WORDS = 40
MAX_PHRASE_WORDS = 22
NONE_VALUES = frozenset({"", "(none)", "(none given)", "none", "n/a", "-"})
TRAILING_STOPWORDS = frozenset("a an and or of the to for in on with by as such including from at".split())

NOUNISH_ENDINGS = ("ogy", "ics", "tion", "sion", "ment", "ness", "ity", "ty", "ism", "al", "ic", "ous", "ive", "ary",
                   "ory", "ing", "s", "ed", "an", "ese", "ish", "er", "or", "ure", "ance", "ence", "ist", "cy")
_COUNT = re.compile(r"\b(?:write|generate|give|produce|list)\s+(?:me\s+)?(\d{1,4})\b", re.IGNORECASE)
_FIELD = re.compile(r"^[ \t]*(skill|description|alternative labels)[ \t]*:[ \t]*(.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_AVOID_HEADER = re.compile(r"^.*do not repeat.*$", re.IGNORECASE | re.MULTILINE)
_BULLET = re.compile(r"^[ \t]*[-*][ \t]+(.+?)[ \t]*$", re.MULTILINE)
_PARENTHETICAL = re.compile(r"\s*\([^)]*\)")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
_SPACES = re.compile(r"\s+")

GENERIC_ANSWERS = (
    "This is a simulated reply from the skillgen LLM simulator.",
    "Simulated answer: the request was received and processed.",
    "The skillgen simulator only writes job-ad sentences; here is a short generic reply instead.",
    "Here is a brief simulated response to your message.",
)


@dataclass(frozen=True)
class SkillPrompt:
    """The fields of a generation prompt, as far as they could be read."""

    n: int
    label: str
    description: str = ""
    alt_labels: tuple[str, ...] = ()
    avoid: frozenset[str] = frozenset()


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def parse_prompt(text: str) -> SkillPrompt | None:
    """The skill a prompt asks about, or None if it names none (not a skillgen prompt)."""
    fields: dict[str, str] = {}
    for match in _FIELD.finditer(text):
        fields.setdefault(match.group(1).lower(), match.group(2))
    label = _clean(fields.get("skill", "")).strip("\"'")
    if label.lower() in NONE_VALUES:
        return None
    count = _COUNT.search(text)
    n = min(MAX_N, int(count.group(1))) if count else DEFAULT_N
    description = _clean(fields.get("description", ""))
    if description.lower() in NONE_VALUES:
        description = ""
    alts: list[str] = []
    for alt in fields.get("alternative labels", "").split(";"):
        alt = _clean(alt)
        if alt.lower() not in NONE_VALUES and alt.lower() != label.lower() and alt not in alts:
            alts.append(alt)
    return SkillPrompt(n, label, description, tuple(alts), _avoid_lines(text))


def _avoid_lines(text: str) -> frozenset[str]:
    header = _AVOID_HEADER.search(text)
    if header is None:
        return frozenset()
    return frozenset(m.group(1).strip().lower() for m in _BULLET.finditer(text, header.end()))


@dataclass(frozen=True)
class Phrase:
    """A skill phrase and whether it reads as an imperative verb phrase."""

    text: str
    verbal: bool

    @functools.cached_property
    def gerund(self) -> str:
        """``assign and manage staff`` -> ``assigning and managing staff``."""
        words = self.text.split()
        start = 1 if _starts_with_adverb([w.lower() for w in words]) else 0  # "safely handle"
        words[start] = gerund(words[start])
        if len(words) > start + 2 and words[start + 1] in ("and", "or") and words[start + 2].lower() in VERBS:
            words[start + 2] = gerund(words[start + 2])
        return " ".join(words)

    @functools.cached_property
    def object(self) -> str:
        """The words after the verb(s): ``manage musical staff`` -> ``musical staff``."""
        words = self.text.split()
        i = 1
        if len(words) > 2 and words[1] in ("and", "or") and words[2].lower() in VERBS:
            i = 3
        while i < len(words) and words[i] in ("up", "out", "on", "in", "to", "with", "for", "the", "a", "an"):
            i += 1
        return " ".join(words[i:])


def _starts_with_adverb(words: list[str]) -> bool:
    """``safely handle ...``, ``critically reflect ...`` (but ``apply`` is a verb, not an adverb)."""
    return len(words) > 1 and words[0].endswith("ly") and words[0] not in VERBS and words[1] in VERBS


def _looks_like_verb(word: str, original: str) -> bool:
    """Unknown-word test: not capitalised (a name) and no noun/adjective ending."""
    return original[:1].islower() and not word.endswith(NOUNISH_ENDINGS)


def to_phrase(text: str, description_first_word: str = "") -> Phrase:
    """Strip parentheticals (``Java (computer programming)``) and decide verbal vs. nominal."""
    clean = _clean(_PARENTHETICAL.sub("", text)) or _clean(text)
    words = clean.lower().split()
    first = words[1] if _starts_with_adverb(words) else words[0]
    if first not in VERBS and len(words) > 1 and _looks_like_verb(first, clean):
        # A word we did not list, in a label whose description is imperative ("migrate existing data":
        # "Apply migration methods ..."): a skill, so most likely a verb.
        if first == description_first_word or description_first_word in VERBS:
            return Phrase(clean, True)
    if first not in VERBS:
        return Phrase(clean, False)
    if first in AMBIGUOUS and description_first_word and description_first_word not in VERBS:
        return Phrase(clean, False)
    return Phrase(clean, len(words) > 1 or first not in AMBIGUOUS)


def _trim(text: str, max_words: int = MAX_PHRASE_WORDS) -> str:
    """At most ``max_words`` words, cut at a clause boundary when there is one, never on a dangling 'and'."""
    text = text.strip().rstrip(".;:, ")
    words = text.split()
    if len(words) > max_words:
        text = " ".join(words[:max_words])
        boundary = max(text.rfind(","), text.rfind(";"))
        if boundary > len(text) // 2:
            text = text[:boundary]
    words = text.split()
    while len(words) > 1 and words[-1].lower().strip(",;") in TRAILING_STOPWORDS:
        words.pop()
    return " ".join(words).rstrip(",;: ")


def _without_label(phrase: str, label: str) -> str:
    """An implicit mention must not name the skill: cut the phrase before the label, or drop it."""
    at = phrase.lower().find(label)
    if at < 0:
        return phrase
    head = _trim(phrase[:at])
    return head if len(head.split()) >= 5 else ""


def _lower_first(text: str) -> str:
    """Lower-case the first letter unless the first word is an acronym (``ICT``, ``DNS``)."""
    if len(text) > 1 and text[1].isupper():
        return text
    return text[:1].lower() + text[1:]


class SkillWriter:
    """Writes job-ad sentences for one parsed prompt; phrases are analysed once, sentences per call."""

    def __init__(self, prompt: SkillPrompt) -> None:
        self.prompt = prompt
        sentences = [s for s in _SENTENCE_SPLIT.split(prompt.description) if s.strip()]
        desc_first = sentences[0].split()[0].lower().strip(",.;:") if sentences else ""
        self.main = to_phrase(prompt.label, desc_first)
        label = self.main.text.lower()
        self.verb_phrases: list[str] = []
        self.noun_phrases: list[str] = []
        for i, sentence in enumerate(sentences[:4]):
            first = sentence.split()[0].lower().strip(",.;:")
            phrase = _without_label(_trim(_lower_first(sentence)), label)
            if len(phrase.split()) < 3:
                continue
            if first in VERBS:
                self.verb_phrases.append(phrase)
            elif i == 0:
                self.noun_phrases.append(phrase)
        self.alts = [to_phrase(a, desc_first) for a in prompt.alt_labels if label not in a.lower()]
        obj = self.main.object if self.main.verbal else ""
        self.object = obj if obj and obj.lower() != label else ""

    def implicit_sources(self) -> list[str]:
        sources = ["vp"] * 3 * bool(self.verb_phrases) + ["np"] * 2 * bool(self.noun_phrases) + ["alt"] * 2 * bool(self.alts)
        return sources or (["obj"] if self.object else [])

    def sentences(self, rng: random.Random, count: int) -> list[str]:
        """Exactly ``count`` distinct sentences, none of them in the prompt's avoid list."""
        seen = set(self.prompt.avoid)
        out: list[str] = []
        for kind in self._plan(rng, count):
            sentence = ""
            for _ in range(12):
                candidate = self._compose(kind, rng)
                if candidate.lower() not in seen and len(candidate.split()) <= MAX_WORDS:
                    sentence = candidate
                    break
            if not sentence:
                sentence = self._unique_fallback(rng, seen)
            seen.add(sentence.lower())
            out.append(sentence)
        return out

    def _plan(self, rng: random.Random, count: int) -> list[str]:
        kinds = ["requirement", "responsibility"] + (["implicit"] if self.implicit_sources() else [])
        plan: list[str] = []
        while len(plan) < count:
            block = kinds[:]
            rng.shuffle(block)
            plan.extend(block)
        return plan[:count]

    def _compose(self, kind: str, rng: random.Random) -> str:
        if kind == "implicit":
            source = rng.choice(self.implicit_sources())
            if source == "vp":
                return _fill(rng.choice(T.IMPLICIT_VERB_PHRASE), rng, vp=rng.choice(self.verb_phrases))
            if source == "np":
                return _fill(rng.choice(T.IMPLICIT_NOUN_PHRASE), rng, np=rng.choice(self.noun_phrases))
            if source == "obj":
                return _fill(rng.choice(T.IMPLICIT_OBJECT), rng, obj=self.object)
            return _explicit(rng.choice(self.alts), rng.choice(("requirement", "responsibility")), rng)
        return _explicit(self.main, kind, rng)

    def _unique_fallback(self, rng: random.Random, seen: set[str]) -> str:
        """When templates run dry (large N, tiny skill): pin the sentence to a distinct company and sector."""
        base = _explicit(self.main, "requirement", rng).rstrip(".")
        for company in T.COMPANIES:
            for sector in T.SECTORS:
                candidate = f"{base} at {company} in the {sector} sector."
                if candidate.lower() not in seen:
                    return candidate
        return f"{base} ({len(seen)})."


def _explicit(phrase: Phrase, kind: str, rng: random.Random) -> str:
    if phrase.verbal:
        family = T.REQUIREMENT_VERBAL if kind == "requirement" else T.RESPONSIBILITY_VERBAL
        return _fill(rng.choice(family), rng, V=phrase.text, G=phrase.gerund)
    family = T.REQUIREMENT_NOMINAL if kind == "requirement" else T.RESPONSIBILITY_NOMINAL
    return _fill(rng.choice(family), rng, N=phrase.text)


_CONTEXT_CHOICES = {"sector": T.SECTORS, "company": T.COMPANIES, "years": T.YEARS, "tail": T.TAILS}
_ROLE_FIELDS = frozenset({"seniority", "role_noun", "role", "a_role"})


@functools.lru_cache(maxsize=None)
def _fields(template: str) -> frozenset[str]:
    """The slot names a template uses, so only those are drawn (this is the server's hot path)."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def _fill(template: str, rng: random.Random, **slots: str) -> str:
    fields = _fields(template)
    values = dict(slots)
    if fields & _ROLE_FIELDS:
        seniority, role_noun = rng.choice(T.SENIORITY), rng.choice(T.ROLE_NOUNS)
        role = f"{seniority} {role_noun}"
        values.update(seniority=seniority, role_noun=role_noun, role=role, a_role=f"{article(role)} {role}")
    for name, choices in _CONTEXT_CHOICES.items():
        if name in fields:
            values[name] = rng.choice(choices)
    text = template.format_map(values)
    text = _SPACES.sub(" ", text).strip()
    return text[:1].upper() + text[1:]


@functools.lru_cache(maxsize=2048)
def writer_for(prompt_text: str) -> SkillWriter | None:
    """The writer for a prompt text (cached: retries and ``n`` > 1 reuse the analysis)."""
    prompt = parse_prompt(prompt_text)
    return SkillWriter(prompt) if prompt else None


def generic_answer(rng: random.Random) -> str:
    return rng.choice(GENERIC_ANSWERS)
