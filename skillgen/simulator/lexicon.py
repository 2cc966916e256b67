"""Just enough English to turn ESCO labels into job-ad grammar.

ESCO skill labels are mostly imperative verb phrases ("manage musical
staff"), knowledge labels noun phrases ("labour legislation"). Templates need
to know which one they hold ("You are able to manage musical staff" vs.
"Solid knowledge of labour legislation") and need the gerund ("experience in
managing musical staff"). The verb list is the set of first words of ESCO
skill labels and descriptions (British spelling, as ESCO's), so it covers the
taxonomy without any model; :data:`AMBIGUOUS` words also start knowledge
labels ("design principles"), and are read as verbs only when the
description confirms it.
"""

from __future__ import annotations

__all__ = ["AMBIGUOUS", "VERBS", "VOWELS", "article", "gerund", "is_verb"]

VERBS = frozenset("""
manage operate perform maintain use develop monitor provide apply prepare advise ensure create understand
design tend conduct assess analyse install write handle identify inspect supervise assist work plan teach
carry coordinate set interact check test evaluate organise promote repair follow clean select implement
communicate sell adjust keep assemble interpret support liaise make control collect determine oversee report
remove calculate measure negotiate adapt define train process build produce examine cut prevent read study
manufacture transfer demonstrate research administer execute comply lead record draw drive diagnose
participate estimate instruct attend treat store take establish arrange review integrate position consult
contribute investigate inform observe place protect help educate mix forecast feed show manipulate respond
compile breed guide deliver translate collaborate undertake present draft lay deal engage load prescribe
attach detect direct document recommend give order enforce dispose transport schedule finish model meet cope
issue explain wash replace match decide think secure grade move improve fill purchase counsel facilitate pack
obtain adhere polish verify weigh mark insert represent gather construct add address preserve regulate
restore recognise encourage calibrate coach edit solve exercise utilise shape anticipate compare receive stay
consider complete cooperate mount fit screen sew care discuss find change describe cook practice run label
register track connect act update harvest balance respect propose distribute pour advocate compose dry tune
disseminate motivate trade allocate clear interview advertise react revise formulate recruit paint extract
program separate practise adopt pump stack display distinguish optimise employ assign offer plot cast serve
dye answer hire customise grind align decorate fasten follow-up heat coat transcribe convert approve memorise
influence search assume configure unload fabricate put sterilise stock focus differentiate stimulate be send
strive post-process conform sort type devise acquire filter fix resolve safeguard supply disassemble watch
pose form plant brief escort contact procure rig reduce have initiate synthesise compute conserve dismantle
classify modify log correct trace empathise brush rescue trim slaughter weld audit accept cultivate wear
tolerate rehearse reinforce solder exert shunt minimise restrict specialise inspire enable dispatch welcome
synchronise improvise join wax visit speak archive play rinse hang evacuate troubleshoot foster spot satisfy
buy cool avoid dig smooth rewrite press bake bind moderate park mould sketch sand blend steer validate thread
spray enhance hand preset listen mentor package refer prioritise guarantee cure bend taste pass critique alter
combine delegate style lift announce innovate conclude delineate dump budget wire slice stir imprint entertain
involve turn commission map anchor expand suggest pilot empower hear lubricate do pick triage transpose catch
seal network scoop officiate file grow split share crush confer dispense handover age contextualise manoeuvre
prune wind close mitigate reconstruct accommodate groom deploy rear express vacuum host intervene specify
animate abide maneuver climb prospect scale comprehend structure locate signal restock nurse raise notify
simulate light set-up discharge introduce maximise dress colour blast tie appraise stamp stand scan implant
choose generate aid reach bring pay disinfect know come exchange pursue clarify predict seek master retrieve
elaborate wrap assure convey capture outline transform open enter inquire explore possess call submit list
cover start recognize organize analyze optimize utilize prioritize look guard correspond scrutinise get furnish
mend view activate sustain commend endorse cleanse hold barter erect agree judge overhaul mold drill achieve gauge
boost talk launch increase retain foresee confirm note tell tidy
""".split())

# Verbs that also begin knowledge labels; read as verbs only if the description starts with a verb.
AMBIGUOUS = frozenset("""
design control train process manufacture research store feed guide direct document model match polish exercise
screen track balance dry trade paint heat influence search stock post-process type supply plant contact audit play
spot press sand thread spray hand style lift wire network vacuum signal discharge colour test
""".split())

VOWELS = frozenset("aeiou")
# Final-syllable-stressed verbs that double their consonant (British spelling, as ESCO).
_DOUBLING = frozenset("""
refer prefer occur transfer confer infer deter admit commit submit transmit permit omit emit regret forget
begin equip program unplug unwrap recur incur concur format
""".split())
_IRREGULAR = {"be": "being", "see": "seeing", "tie": "tying", "lie": "lying", "die": "dying", "dye": "dyeing",
              "age": "ageing", "singe": "singeing", "programme": "programming"}


def is_verb(word: str) -> bool:
    return word.lower() in VERBS


def gerund(verb: str) -> str:
    """``manage`` -> ``managing``, ``plan`` -> ``planning``, ``label`` -> ``labelling``, ``set-up`` -> ``setting-up``."""
    word = verb.lower()
    if "-" in word:
        head, _, tail = word.partition("-")
        return f"{gerund(head)}-{tail}" if head in VERBS else f"{head}-{gerund(tail)}"
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith("ie"):
        return word[:-2] + "ying"
    if word.endswith(("ee", "ye", "oe")):
        return word + "ing"
    if word.endswith("e") and len(word) > 2:
        return word[:-1] + "ing"
    if word in _DOUBLING or _doubles_final_consonant(word):
        return word + word[-1] + "ing"
    return word + "ing"


def _doubles_final_consonant(word: str) -> bool:
    if len(word) < 3 or word[-1] in VOWELS or word[-1] in "wxy" or word[-2] not in VOWELS:
        return False
    vowel_letters = sum(ch in VOWELS for ch in word)
    if vowel_letters == 1:  # one-syllable CVC: plan, ship, strip
        return True
    # British -l doubling after a single vowel: label, model, signal, counsel, control
    return word[-1] == "l" and word[-3] not in VOWELS


def article(phrase: str) -> str:
    """``a`` or ``an`` for the phrase (by its first letter; good enough for job-ad vocabulary)."""
    return "an" if phrase[:1].lower() in VOWELS else "a"
