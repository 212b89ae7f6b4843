"""The image's text block: what the language model reads about a picture.

Written for the model that reads it, a 135M one included (benchmarks/image_answers.py): a
small model copies the block's first words, so they are the picture's content in plain
words: people first (ImageNet has no "person"), then the everyday kind before the fine
class ("a dog, probably a malamute; possibly a husky"), with confidence as words, never
percentages. The file's pixel size and format are said only when the question asks
about them: otherwise they are what a small model answers "what is in this picture?"
with. Where the classifier is unsure and no one is seen, the block says so plainly
instead of listing weak guesses. Facts from the file (when, with what camera, where,
the main colours) come last.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from askgpt.vision.encoder import ImageFeatures
from askgpt.vision.images import LoadedImage
from askgpt.vision.kinds import kind_of, with_article

# A kind's summed probability (ImageNet's fine classes of one kind, e.g. all the dogs),
# and the words it is said with. Below the last, the guess is not said at all.
SURE, LIKELY, POSSIBLE = 0.55, 0.30, 0.15
# A fine class is named after its kind when it holds this share of the kind's probability
# ("probably a malamute"), and a second one when it has at least this probability.
FINE_PROBABLY, FINE_SECOND = 0.5, 0.10
# Where the image has text, a page, sign or screenshot is likelier than any ImageNet class:
# only a confident object is then worth the model's attention.
SURE_WITH_TEXT = 0.50


class Focus(Enum):
    """What a question asks about a picture: that part of the block comes first, where a
    small model looks for its answer, and the file's facts are said only when asked."""

    COUNT = re.compile(r"\bhow many\b|\bnumber of\b|\bcount\b", re.IGNORECASE)
    TEXT = re.compile(r"\b(text|texts|say|says|said|read|reads|written|writing|words?|letters?|signs?|labels?|"
                      r"caption|title|page|document|receipt|screenshot|ocr)\b", re.IGNORECASE)
    COLOUR = re.compile(r"\bcolou?rs?\b|\bcolou?red\b|\bshade\b|\bhue\b", re.IGNORECASE)
    WHEN = re.compile(r"\bwhen\b|\bdate\b|\bday\b|\byear\b|\btime\b|\btaken on\b|\bcamera\b|\bphone\b",
                      re.IGNORECASE)
    WHERE = re.compile(r"\bwhere\b|\blocation\b|\bplace\b|\bcity\b|\bcountry\b|\bgps\b|\bcoordinates\b",
                       re.IGNORECASE)
    SIZE = re.compile(r"\b(size|sized|resolution|dimensions?|pixels?|megapixels?|format|file ?type|width|height|"
                      r"jpe?g|png|gif|webp|bmp|tiff?|heic)\b", re.IGNORECASE)
    # "What's in this photo's EXIF?", "all the details": every fact the file gives.
    ALL = re.compile(r"\b(exif|metadata|details|everything|all you can)\b", re.IGNORECASE)

    def asked(self, question: str | None) -> bool:
        return question is not None and self.value.search(question) is not None


@dataclass(frozen=True)
class Seen:
    """What the classifier saw, grouped by everyday kind."""

    kind: str
    score: float  # the kind's summed probability
    fine: tuple[tuple[str, float], ...]  # its fine classes, most likely first
    animal: bool

    def phrase(self) -> str:
        """"a dog, probably a malamute; possibly a husky" (the fine class only where it says more)."""
        words = with_article(self.kind)
        details = [(name, p) for name, p in self.fine if name.lower() != self.kind.lower()]
        if details:
            top, p = details[0]
            words += f", {'probably' if p >= FINE_PROBABLY * self.score else 'perhaps'} {with_article(top)}"
            if len(details) > 1 and details[1][1] >= FINE_SECOND:
                words += f"; possibly {with_article(details[1][0])}"
        return words


def seen(labels: ImageFeatures, *, imagenet: bool) -> list[Seen]:
    """The labels grouped by kind (ImageNet's classes; a CLIP encoder's tags are their own
    kind), most likely first."""
    groups: dict[str, list[tuple[str, float]]] = {}
    animals: dict[str, bool] = {}
    ids = labels.class_ids if imagenet and len(labels.class_ids) == len(labels.labels) else ()
    for i, label in enumerate(labels.labels):
        kind = kind_of(ids[i], label.name) if ids else None
        name = kind.name if kind is not None else label.name
        groups.setdefault(name, []).append((label.name, label.score))
        animals[name] = kind.animal if kind is not None else False
    found = [Seen(name, sum(p for _, p in fine), tuple(sorted(fine, key=lambda f: -f[1])), animals[name])
             for name, fine in groups.items()]
    return sorted(found, key=lambda s: -s.score)


def subject_sentence(things: Sequence[Seen], people: str | None, *, floor: float) -> str | None:
    """The block's first sentence: who and what the picture shows, with how sure."""
    said = [s for s in things if s.score >= floor][:2]
    verb, what = "shows", ""
    if said:
        top = said[0]
        verb = "shows" if top.score >= SURE else "probably shows" if top.score >= LIKELY else "may show"
        # A second kind only when it is nearly as likely (a dog and a cat together).
        pair = len(said) > 1 and said[1].score >= max(LIKELY, top.score / 2)
        what = " and ".join(s.phrase() for s in said[: 2 if pair else 1])
    if people is None:
        return f"The picture {verb} {what}." if what else None
    # People come from detectors that are sure (people.py's thresholds): said first, plainly.
    if not what:
        return f"The picture shows {people}."
    if verb == "shows":
        return f"The picture shows {people}, and {what}."
    also = "may also show" if verb == "may show" else "probably also shows"
    return f"The picture shows {people}. It {also} {what}."


@dataclass(frozen=True)
class FileFacts:
    """What the file says, each as one sentence (vision/facts/photo.py), or None."""

    when: str | None = None
    where: str | None = None  # None also when the place must not be said (a served model)
    colour: str | None = None


@dataclass(frozen=True)
class Block:
    """The block's parts, before they are ordered for a question."""

    subject: str | None
    confident: bool  # the subject names something seen (not "no confident object")
    text_lines: tuple[str, ...]
    text_read: bool  # OCR ran (so "no text" is a finding, not a gap)
    people_count: int | None  # None: people were not looked for
    facts: FileFacts = field(default_factory=FileFacts)
    size: str = ""

    def render(self, question: str | None) -> str:
        everything = Focus.ALL.asked(question)
        focused = any(f.asked(question) for f in Focus if f is not Focus.ALL)
        # "No confident object" answers nothing a focused question asks ("what colour is it?").
        said = self.subject and (self.confident or not focused)
        sections: dict[Focus | None, list[str]] = {None: [self.subject] if said else []}
        if self.text_lines:
            sections[Focus.TEXT] = ["Text in it:", *self.text_lines]
        elif self.text_read and Focus.TEXT.asked(question):
            sections[Focus.TEXT] = ["No text in it."]
        if self.people_count is not None and Focus.COUNT.asked(question):
            sections[Focus.COUNT] = [_count_sentence(self.people_count)]
        for focus, sentence in ((Focus.WHEN, self.facts.when), (Focus.WHERE, self.facts.where),
                                (Focus.COLOUR, self.facts.colour)):
            # The file's facts only when asked: a small model otherwise answers with them.
            if sentence and (everything or focus.asked(question)
                             or (focus is Focus.COLOUR and not self.subject and not self.text_lines)):
                sections[focus] = [sentence]
        # Without a question (an image attached before it is asked) the size goes last.
        if question is None or everything or Focus.SIZE.asked(question) or not any(sections.values()):
            sections[Focus.SIZE] = [self.size]
        asked = [f for f in sections if f is not None and f.asked(question)]
        order = [*asked, *(f for f in sections if f not in asked)]
        return "\n".join(line for focus in order for line in sections[focus])


def _count_sentence(count: int) -> str:
    if count == 0:
        return "No people are seen in it."
    if count == 1:
        return "There is one person in it."
    return f"There are {NUMBERS.get(count, str(count))} people in it."


NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def describe(image: LoadedImage, labels: ImageFeatures | None, text: ImageFeatures | None, *,
             imagenet: bool = True, people: str | None = None, people_count: int | None = None,
             facts: FileFacts = FileFacts(), question: str | None = None, min_score: float = POSSIBLE) -> str:
    """The image's text block for ``question`` (the user's words: what they ask about comes
    first). ``labels``: the encoder's guesses (None: not in text, e.g. --image-mode embed);
    ``text``: OCR; ``people``: the people phrase ("two people, at the left and the centre")
    and ``people_count`` how many (None: not looked for); ``facts``: what the file says."""
    has_text = text is not None and bool(text.text_lines)
    floor = max(min_score, SURE_WITH_TEXT) if has_text else min_score
    things = seen(labels, imagenet=imagenet) if labels is not None else []
    subject = subject_sentence(things, people, floor=floor)
    confident = subject is not None
    if subject is None and labels is not None:
        subject = ("It is mostly text." if has_text else
                   "No confident object in it; it may be a painting, a drawing or a scene.")
    lines = tuple(text.text_lines) if text is not None else ()
    block = Block(subject, confident, lines, text is not None, people_count, facts,
                  f"It is a {image.width}x{image.height} {image.format} file.")
    return block.render(question)
