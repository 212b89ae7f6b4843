"""The needle benchmark's kinds: what is planted, what is asked, how an answer is scored.

``exact`` is the classic case (the question repeats the fact's words). Every other kind asks
in words of its own, because a question that repeats its fact measures keyword lookup, not
reading: ``paraphrase`` shares no rare word with its fact; ``distractors`` hides the fact among
seven look-alikes about other places; ``multi-value`` spreads three values of one key through the
text and asks for all; ``multi-query`` asks two unrelated facts in one question; ``aggregate``
asks "how many" or "list every" over several planted items. Each kind has several templates with
random values, so a run is not one phrasing. Answers are scored by whole words, case-insensitive.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from enum import Enum

from askgpt.runtime.choices import choice
from askgpt.runtime.errors import UsageError


class NeedleKind(Enum):
    EXACT = "exact"
    PARAPHRASE = "paraphrase"
    DISTRACTORS = "distractors"
    MULTI_VALUE = "multi-value"
    MULTI_QUERY = "multi-query"
    AGGREGATE = "aggregate"


@dataclass(frozen=True)
class Probe:
    """Facts to plant (each at its depth, 0..1), the question, and what a right answer names."""

    kind: NeedleKind
    facts: tuple[str, ...]
    depths: tuple[float, ...]
    question: str
    answers: tuple[tuple[str, ...], ...]  # one entry per value scored; each lists its accepted spellings
    wrong: tuple[str, ...] = ()  # values of look-alike facts: naming any makes the whole answer wrong


CITIES = ["Oslo", "Lima", "Cairo", "Perth", "Quito", "Riga", "Hanoi", "Dakar", "Sofia", "Tunis", "Accra", "Minsk"]
PLACES = ["archive", "vault", "observatory", "harbour office", "library", "greenhouse"]
NAMES = ["Agnes", "Bruno", "Consuelo", "Dmitri", "Eamon", "Fenella", "Gideon", "Halima", "Ignatius", "Jolanta"]
TOWNS = ["Ardmore", "Kinsale", "Dunmore", "Ballycotton", "Carrickfergus", "Portmagee"]
ANIMALS = ["parrot", "tortoise", "ferret", "canary", "hedgehog", "iguana", "goldfish", "chinchilla"]
NUMBER_WORDS = {3: "three", 4: "four", 5: "five", 6: "six"}


def kind_list(text: str) -> list[NeedleKind]:
    """``all`` or a comma-separated list of kinds, in the order given, without repeats."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(NeedleKind)
    if not names:
        raise UsageError("--kinds takes all or a list of " + ",".join(k.value for k in NeedleKind))
    return list(dict.fromkeys(choice(NeedleKind, n, "--kinds") for n in names))


def mentions(text: str, value: str) -> bool:
    """``value`` occurs in ``text`` as a whole word (or words), case-insensitive: "cat" is not in "indicates"."""
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, re.IGNORECASE) is not None


def needed(probe: Probe) -> tuple[str, ...]:
    """The facts an answer must be read from: those stating a value asked for (all, for a count)."""
    stating = tuple(f for f in probe.facts if any(mentions(f, s) for spellings in probe.answers for s in spellings))
    return stating or probe.facts


def score(probe: Probe, answer: str) -> int:
    """How many of the probe's values the answer names; 0 if it names a look-alike fact's value."""
    if any(mentions(answer, w) for w in probe.wrong):
        return 0
    return sum(any(mentions(answer, s) for s in spellings) for spellings in probe.answers)


# Paraphrase templates: (fact, question, values). The question shares no word of five letters or
# more with the fact (stop words aside); the fact's other slots ({place}, {town}, {name}) never
# appear in the question either.
_PARAPHRASES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("The keeper of the {place} light shares his cottage with a grey {value}.",
     "Which pet lives with the lighthouse man?", tuple(ANIMALS)),
    ("Every winter the old baker from {town} sails to {value} to visit her sister.",
     "Where does the woman who makes bread travel when it gets cold?",
     ("Madeira", "Zanzibar", "Tasmania", "Sardinia", "Iceland", "Patagonia")),
    ("{name}, who conducts our choir, plays the {value} whenever rehearsals finish early.",
     "Which instrument does the person leading the singers perform on?",
     ("bassoon", "harpsichord", "ukulele", "cello", "trombone", "accordion")),
    ("Captain {name} buried the ship's gold beneath a {value} tree on the eastern cliff.",
     "Under what kind of plant did the sea commander hide the treasure?",
     ("baobab", "cypress", "tamarind", "juniper", "sycamore", "magnolia")),
    ("The mayor of {town} takes breakfast each morning at a cafe called {value}.",
     "Where does the town's leader eat first thing every day?",
     ("Bluebell", "Moonrise", "Saffron", "Driftwood", "Hollyhock", "Marigold")),
    ("{name}, the village blacksmith, was born in {value} during a thunderstorm.",
     "What year did the man who forges horseshoes come into the world?",
     tuple(str(y) for y in range(1712, 1790, 7))),
    ("Our family doctor, {name}, spends his weekends restoring a {value} motorbike.",
     "What make of two-wheeled machine does the physician repair on Saturdays and Sundays?",
     ("Triumph", "Norton", "Vincent", "Ducati", "Brough")),
)
_LIGHTS = ["Hook Head", "Fastnet", "Skerryvore", "Longships", "Eddystone"]

# Named-fact templates: (fact, question, value maker). The question names the entity ({city}) in
# words of its own. Used for distractors (eight cities, one asked) and for multi-query (two facts).
_NAMED: tuple[tuple[str, str, str], ...] = (
    ("The {city} {place} opens with the code {value}.", "Which number unlocks the {place} in {city}?", "4"),
    ("In {city}, the night ferry leaves from pier {value}.", "At which pier does the late boat depart in {city}?",
     "2"),
    ("The {city} chess club meets every Thursday in room {value}.",
     "Where do the people of {city} who play chess gather each week? Give the room.", "3"),
)


def _fill(text: str, **slots: str) -> str:
    return text.format(**slots)


def _numbers(rng: random.Random, digits: str, n: int) -> list[str]:
    low = 10 ** (int(digits) - 1)
    return [str(v) for v in rng.sample(range(low, 10 * low), n)]


def make_probe(kind: NeedleKind, rng: random.Random, depth: float) -> Probe:
    """A probe of ``kind`` with values drawn from ``rng``; ``depth`` places single facts."""
    if kind is NeedleKind.EXACT:  # today's case, drawn in today's order so old seeds plant the same fact
        city, place, value = rng.choice(CITIES), rng.choice(PLACES), str(rng.randint(1000, 9999))
        return Probe(kind, (f"The passphrase for the {city} {place} is {value}.",), (depth,),
                     f"What is the passphrase for the {city} {place}?", ((value,),))
    if kind is NeedleKind.PARAPHRASE:
        fact, question, values = rng.choice(_PARAPHRASES)
        value = rng.choice(values)
        text = _fill(fact, value=value, place=rng.choice(_LIGHTS), town=rng.choice(TOWNS), name=rng.choice(NAMES))
        return Probe(kind, (text,), (depth,), question, ((value,),))
    if kind is NeedleKind.DISTRACTORS:
        fact, question, digits = rng.choice(_NAMED)
        cities, place = rng.sample(CITIES, 8), rng.choice(PLACES)
        values = _numbers(rng, digits, 8)
        facts = tuple(_fill(fact, city=c, place=place, value=v) for c, v in zip(cities, values, strict=True))
        depths = tuple(sorted(rng.random() for _ in facts))
        target = rng.randrange(8)
        return Probe(kind, facts, depths, _fill(question, city=cities[target], place=place),
                     ((values[target],),), tuple(v for i, v in enumerate(values) if i != target))
    if kind is NeedleKind.MULTI_VALUE:
        return _multi_value(rng)
    if kind is NeedleKind.MULTI_QUERY:
        first, second = rng.sample(_NAMED, 2)
        cities, place = rng.sample(CITIES, 2), rng.choice(PLACES)
        values = [_numbers(rng, t[2], 1)[0] for t in (first, second)]
        facts = tuple(_fill(t[0], city=c, place=place, value=v)
                      for t, c, v in zip((first, second), cities, values, strict=True))
        q1, q2 = (_fill(t[1], city=c, place=place) for t, c in zip((first, second), cities, strict=True))
        question = f"Two questions. {q1} And {q2[0].lower()}{q2[1:]}"
        return Probe(kind, facts, (rng.random(), rng.random()), question, tuple((v,) for v in values))
    if kind is NeedleKind.AGGREGATE:
        return _aggregate(rng)
    raise UsageError(f"unknown needle kind {kind!r}")  # unreachable: every member is handled above


def _spread(rng: random.Random, n: int) -> tuple[float, ...]:
    """One depth in each of ``n`` equal parts of the input, so the facts lie far apart."""
    return tuple((i + rng.random()) / n for i in range(n))


def _multi_value(rng: random.Random) -> Probe:
    city, place, name = rng.choice(CITIES), rng.choice(PLACES), rng.choice(NAMES)
    templates = (
        ("A spare key to the {city} {place} carries the tag {value}.",
         "Which three labels are on the copies that open the {place} in {city}?", _numbers(rng, "4", 3)),
        ("{name} once kept a pet {value}.", "Name every animal that {name} has owned; there are three.",
         rng.sample(ANIMALS, 3)),
        ("The {city} choir once sang in {value}.", "In which three towns have the singers from {city} performed?",
         rng.sample(TOWNS, 3)),
    )
    fact, question, values = rng.choice(templates)
    facts = tuple(_fill(fact, city=city, place=place, name=name, value=v) for v in values)
    return Probe(NeedleKind.MULTI_VALUE, facts, _spread(rng, 3), _fill(question, city=city, place=place, name=name),
                 tuple((v,) for v in values))


def _aggregate(rng: random.Random) -> Probe:
    n, city = rng.randint(3, 5), rng.choice(CITIES)
    if rng.random() < 0.5:
        goods = rng.sample(["cinnamon", "pepper", "indigo", "copper", "tobacco", "nutmeg", "cloves", "mahogany"], n)
        facts = tuple(f"Among the cargo unloaded at {city} was a crate of {g}." for g in goods)
        return Probe(NeedleKind.AGGREGATE, facts, _spread(rng, n),
                     f"List every kind of goods that came off the ships in {city}.", tuple((g,) for g in goods))
    days = rng.sample(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"], n)
    facts = tuple(f"On {d}, a heron was spotted beside the {city} reservoir." for d in days)
    return Probe(NeedleKind.AGGREGATE, facts, _spread(rng, n),
                 f"How many times were birds seen at the lake near {city}?", ((str(n), NUMBER_WORDS[n]),))
