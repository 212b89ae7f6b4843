"""Everyday kinds for ImageNet's fine classes: "a dog, probably a malamute", not "malamute (41%)".

ImageNet's 1000 classes are fine (118 dog breeds, 59 birds, 5 house cats) and carry no
plain word for what they are. A person asking "what animal is this?" wants the kind
first; the breed is a detail, and a small model copies whichever word comes first. The
classes are numbered in WordNet order, so each kind is a few runs of indices (checked
against the class names in tests/test_image_block.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# (first index, last index, kind, is an animal). Indices are torchvision's ImageNet order
# (vision/data/imagenet_classes.txt).
_RUNS: tuple[tuple[int, int, str, bool], ...] = (
    (0, 6, "fish", True), (7, 24, "bird", True), (25, 29, "salamander", True), (30, 32, "frog", True),
    (33, 37, "turtle", True), (38, 48, "lizard", True), (49, 50, "crocodile", True), (51, 51, "dinosaur", True),
    (52, 68, "snake", True), (69, 69, "trilobite", True), (70, 77, "spider", True), (78, 78, "tick", True),
    (79, 79, "centipede", True), (80, 100, "bird", True), (101, 101, "elephant", True),
    (102, 106, "animal", True), (107, 107, "jellyfish", True), (108, 109, "coral", True),
    (110, 111, "worm", True), (112, 117, "mollusc", True), (118, 121, "crab", True), (122, 124, "lobster", True),
    (125, 125, "crab", True), (126, 126, "animal", True), (127, 146, "bird", True), (147, 148, "whale", True),
    (149, 149, "animal", True), (150, 150, "sea lion", True), (151, 268, "dog", True), (269, 272, "wolf", True),
    (273, 275, "wild dog", True), (276, 276, "hyena", True), (277, 280, "fox", True), (281, 285, "cat", True),
    (286, 293, "big cat", True), (294, 297, "bear", True), (298, 299, "mongoose", True),
    (300, 307, "beetle", True), (308, 308, "fly", True), (309, 309, "bee", True), (310, 310, "ant", True),
    (311, 318, "insect", True), (319, 320, "dragonfly", True), (321, 326, "butterfly", True),
    (327, 329, "sea creature", True), (330, 332, "rabbit", True), (333, 338, "rodent", True),
    (339, 339, "horse", True), (340, 340, "zebra", True), (341, 343, "pig", True), (344, 344, "hippopotamus", True),
    (345, 347, "cattle", True), (348, 350, "wild sheep or goat", True), (351, 353, "antelope", True),
    (354, 354, "camel", True), (355, 355, "llama", True), (356, 362, "weasel-like animal", True),
    (363, 364, "animal", True), (365, 369, "ape", True), (370, 382, "monkey", True), (383, 384, "lemur", True),
    (385, 386, "elephant", True), (387, 388, "panda", True), (389, 397, "fish", True),
)
# Everyday words for groups of ImageNet's object classes (the rest keep their own name).
_OBJECTS: dict[str, tuple[int, ...]] = {
    "car": (407, 436, 468, 511, 609, 627, 656, 661, 751, 817),
    "truck": (555, 569, 675, 717, 734, 864, 867),
    "boat": (472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914),
    "aircraft": (404, 895, 908),
    "bicycle": (444, 671, 870, 880),
    "motorcycle": (665, 670),
    "train": (466, 547, 565, 705, 820, 829),
}
_OBJECT_KIND = {index: kind for kind, indices in _OBJECTS.items() for index in indices}


@dataclass(frozen=True)
class Kind:
    name: str  # "dog"
    animal: bool


def kind_of(index: int, class_name: str) -> Kind:
    """The everyday kind of ImageNet class ``index`` (its own name for most objects)."""
    for first, last, name, animal in _RUNS:
        if first <= index <= last:
            return Kind(name, animal)
    return Kind(_OBJECT_KIND.get(index, class_name), False)


def with_article(noun: str) -> str:
    """"a dog", "an owl", "an ibex"."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun
