"""Job-ad sentence templates and the context vocabulary that fills them.

Three families, as the generation prompt asks for: explicit *requirements*,
*responsibilities*, and *implicit* mentions that show the skill in action
without its label. Each family has verbal forms (for labels such as "manage
musical staff": ``{V}`` base form, ``{G}`` gerund) and nominal forms (for
labels such as "labour legislation": ``{N}``). Implicit templates are filled
from the description (``{vp}`` a verb phrase, ``{np}`` a noun phrase) or from
an alternative label run through the other families. Seniority, sector,
company and an optional tail vary the context, and make lengths vary.
"""

from __future__ import annotations

__all__ = ["COMPANIES", "IMPLICIT_NOUN_PHRASE", "IMPLICIT_OBJECT", "IMPLICIT_VERB_PHRASE", "REQUIREMENT_NOMINAL",
           "REQUIREMENT_VERBAL", "RESPONSIBILITY_NOMINAL", "RESPONSIBILITY_VERBAL", "ROLE_NOUNS", "SECTORS",
           "SENIORITY", "TAILS", "YEARS"]

REQUIREMENT_VERBAL = (
    "You are able to {V}{tail}.",
    "The ability to {V} is essential for this {role} position.",
    "Proven experience in {G} is required.",
    "You have at least {years} years of experience in {G}.",
    "We are looking for {a_role} who knows how to {V}.",
    "Candidates must be able to {V} independently{tail}.",
    "Experience in {G} within the {sector} sector is a strong plus.",
    "You can demonstrate a solid track record of {G}.",
    "Applicants should feel confident {G}{tail}.",
    "Being able to {V} is a must for this role at {company}.",
    "Prior experience in {G} is an advantage, but we will train the right {seniority} candidate.",
    "Our ideal {role_noun} can {V} without close supervision.",
    "Must be comfortable {G} in a busy {sector} environment.",
    "You know how to {V} and can explain your approach to others.",
)

REQUIREMENT_NOMINAL = (
    "Solid knowledge of {N} is required.",
    "You have at least {years} years of hands-on experience with {N}.",
    "Familiarity with {N} is considered a strong plus.",
    "A strong background in {N} is essential for this {role} role.",
    "We expect a good understanding of {N}, ideally gained in the {sector} sector.",
    "Knowledge of {N} is a must for every {role_noun} on our team.",
    "You bring practical expertise in {N}{tail}.",
    "Applicants must demonstrate sound knowledge of {N}.",
    "Experience with {N} at {company} or a similar organisation is an advantage.",
    "You are comfortable working with {N} on a daily basis.",
    "We are looking for {a_role} with in-depth knowledge of {N}.",
)

RESPONSIBILITY_VERBAL = (
    "You will {V}{tail}.",
    "In this role you will {V} for our {sector} clients.",
    "Your main responsibilities include {G}{tail}.",
    "As our new {role}, you will be responsible for {G}.",
    "Day to day, you will {V} together with the wider team.",
    "You will take ownership of {G} across the {sector} business.",
    "Key tasks include {G} and reporting progress to the team lead.",
    "Joining {company}, you will {V} and help us raise our standards.",
    "The {role} will {V} as part of daily operations.",
    "You will be expected to {V}{tail}.",
)

RESPONSIBILITY_NOMINAL = (
    "You will apply your knowledge of {N} in daily projects{tail}.",
    "In this role you will be the go-to person for questions about {N}.",
    "Your responsibilities include applying {N} to real cases for our {sector} clients.",
    "As our new {role}, you will use {N} to improve how we work.",
    "You will share your expertise in {N} with colleagues across {company}.",
    "You will keep our {sector} team up to date on {N}.",
    "You will put {N} into practice{tail}.",
)

IMPLICIT_VERB_PHRASE = (
    "You will {vp}.",
    "In this {seniority} role, you {vp}.",
    "We need someone who can {vp}.",
    "At {company}, our {role_noun}s {vp}.",
    "You know how to {vp}, even under pressure.",
    "Expect to {vp} on a regular basis.",
    "Part of your week: you {vp}.",
    "You will be trusted to {vp}{tail}.",
)

IMPLICIT_NOUN_PHRASE = (
    "You understand {np}.",
    "Your work draws on a thorough grasp of {np}.",
    "A good command of {np} will help you succeed at {company}.",
    "You are at home with {np}.",
    "Day to day, you rely on {np}{tail}.",
    "You can explain {np} to colleagues in plain language.",
)

# When the description gives nothing to work with: the skill's object without its verb.
IMPLICIT_OBJECT = (
    "Hands-on work with {obj} is part of the daily routine in this {role} job.",
    "You will spend much of your time on {obj}{tail}.",
    "Our {sector} team relies on you for everything related to {obj}.",
)

SENIORITY = ("junior", "entry-level", "mid-level", "experienced", "senior", "lead", "principal", "trainee", "graduate")
ROLE_NOUNS = (
    "specialist", "technician", "coordinator", "officer", "associate", "consultant", "assistant", "supervisor",
    "professional", "manager", "operator", "advisor", "team member", "engineer",
)
SECTORS = (
    "healthcare", "logistics", "retail", "manufacturing", "public", "hospitality", "construction",
    "financial services", "education", "agriculture", "energy", "non-profit", "automotive", "food production",
    "creative", "IT services", "transport", "pharmaceutical", "tourism", "telecommunications",
)
COMPANIES = (
    "a growing start-up", "a family-owned business", "a multinational group", "a regional hospital",
    "a public agency", "a mid-sized manufacturer", "a busy hotel", "a logistics provider", "our company",
    "a leading retailer", "a local authority", "an international NGO",
)
# "" is listed several times so most sentences carry no tail.
TAILS = (
    "", "", "", "", "",
    " in a fast-paced environment",
    " with minimal supervision",
    " as part of a small, friendly team",
    " in line with company standards and regulations",
    " across several sites",
    " while meeting tight deadlines",
    " for both internal and external clients",
    " in close cooperation with other departments",
)
YEARS = ("two", "three", "five", "several", "1-2", "3+")
