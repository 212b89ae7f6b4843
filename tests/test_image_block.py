"""The image block: what the language model reads about a picture (vision/block.py), built
from real photos: content first in plain words, people, the file's facts when asked, and
never the machinery (percentages, pixel sizes, format names) unless asked."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from askgpt.vision.block import FileFacts, describe
from askgpt.vision.encoder import ImageFeatures, Label
from askgpt.vision.images import load_image
from askgpt.vision.kinds import kind_of, with_article
from askgpt.vision.pipeline import ImagePipeline, TargetModel, VisionConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labelled_photos import MACHINERY, build, cases  # noqa: E402

SKIMAGE = Path(__import__("skimage").__file__).parent / "data"
CLASSES = (Path(__file__).resolve().parent.parent / "vision" / "data" / "imagenet_classes.txt").read_text().split("\n")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> ImagePipeline:
    return ImagePipeline(VisionConfig(threads=2), tmp_path_factory.mktemp("cache"))


def block(pipeline: ImagePipeline, path: Path, question: str, target: TargetModel | None = None) -> str:
    blocks, _ = pipeline.encode([load_image(str(path))], target, question=question)
    return blocks[0].text


def test_kinds_follow_the_class_names() -> None:
    # The kinds are runs of indices: check them against the names they stand for.
    assert {kind_of(i, CLASSES[i]).name for i in range(151, 269)} == {"dog"}
    assert {kind_of(i, CLASSES[i]).name for i in range(281, 286)} == {"cat"}
    assert all("cat" in CLASSES[i].lower() or CLASSES[i] == "tabby" for i in range(281, 286))
    assert kind_of(CLASSES.index("goldfish"), "goldfish").name == "fish"
    assert kind_of(CLASSES.index("bald eagle"), "bald eagle").name == "bird"
    assert kind_of(CLASSES.index("sports car"), "sports car").name == "car"
    assert kind_of(CLASSES.index("espresso"), "espresso") == kind_of(967, "espresso")
    assert kind_of(CLASSES.index("espresso"), "espresso").name == "espresso"  # objects keep their name
    assert all(kind_of(i, CLASSES[i]).animal for i in range(0, 398))
    assert not any(kind_of(i, CLASSES[i]).animal for i in range(398, 1000))
    assert with_article("owl") == "an owl" and with_article("dog") == "a dog"


def test_the_kind_comes_first_and_confidence_is_words() -> None:
    image = load_image(str(SKIMAGE / "chelsea.png"))
    dogs = ImageFeatures("mobilenet", labels=(Label("malamute", 0.45), Label("Siberian husky", 0.25),
                                              Label("Eskimo dog", 0.1)), class_ids=(249, 250, 248))
    text = describe(image, dogs, None, question="What animal is in this picture?")
    assert text.startswith("The picture shows a dog, probably a malamute; possibly a Siberian husky.")
    weak = ImageFeatures("mobilenet", labels=(Label("malamute", 0.2), Label("lynx", 0.05)), class_ids=(249, 287))
    assert describe(image, weak, None, question="What is this?").startswith("The picture may show a dog")
    nothing = ImageFeatures("mobilenet", labels=(Label("window screen", 0.08),), class_ids=(904,))
    assert describe(image, nothing, None, question="What is this?").startswith("No confident object in it")
    for labels in (dogs, weak, nothing):
        assert not MACHINERY.search(describe(image, labels, None, question="Describe this picture."))


def test_size_and_format_only_when_asked() -> None:
    image = load_image(str(SKIMAGE / "chelsea.png"))
    labels = ImageFeatures("mobilenet", labels=(Label("tabby", 0.7),), class_ids=(281,))
    assert "451x300 PNG" not in describe(image, labels, None, question="Describe this picture.")
    assert describe(image, labels, None, question="What size is this image?").startswith("It is a 451x300 PNG file.")


def test_a_question_s_part_comes_first_and_facts_only_when_asked() -> None:
    image = load_image(str(SKIMAGE / "chelsea.png"))
    labels = ImageFeatures("mobilenet", labels=(Label("tabby", 0.7),), class_ids=(281,))
    facts = FileFacts(when="Taken on 4 May 2019 at 16:20.", where="Taken near Paris, France.",
                      colour="The colours are mostly brown.")
    text = ImageFeatures("ocr", text_lines=("HELLO",))
    assert describe(image, labels, text, facts=facts, question="When was this taken?").startswith("Taken on 4 May")
    assert describe(image, labels, text, facts=facts, question="Where was this taken?").startswith("Taken near")
    assert describe(image, labels, text, facts=facts, question="What colour is it?").startswith("The colours")
    assert describe(image, labels, text, facts=facts, question="What does it say?").startswith("Text in it:\nHELLO")
    plain = describe(image, labels, text, facts=facts, question="What animal is this?")
    assert plain.startswith("The picture shows a cat") and "Taken" not in plain and "colours" not in plain
    assert "No text in it." in describe(image, labels, ImageFeatures("ocr"), question="What does the sign say?")
    counted = describe(image, labels, None, people="two people, at the left and the right", people_count=2,
                       question="How many people are there?")
    assert counted.startswith("There are two people in it.\nThe picture shows two people, at the left and the right")


def test_real_photos_people_first_and_no_machinery(pipeline: ImagePipeline) -> None:
    astronaut = block(pipeline, SKIMAGE / "astronaut.png", "Who or what is in this picture?")
    assert astronaut.startswith("The picture shows a person")
    camera = block(pipeline, SKIMAGE / "camera.png", "Who or what is in this picture?")
    assert re.match(r"The picture shows a person\b", camera)
    cat = block(pipeline, SKIMAGE / "chelsea.png", "What animal is in this picture?")
    assert cat.startswith("The picture shows a cat")
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):  # face-free, person-free photos add no people
        text = block(pipeline, SKIMAGE / name, "Describe this picture.")
        assert not re.search(r"\b(person|people)\b", text), (name, text)
        assert not MACHINERY.search(text), (name, text)


def test_the_exif_of_a_photo_reaches_the_block_and_gps_stays_local(pipeline: ImagePipeline, tmp_path: Path) -> None:
    made = {case.topic: path for case, path in build(tmp_path) if case.topic in ("date", "place")}
    assert "Taken on 4 May 2019" in block(pipeline, made["date"], "When was this photo taken?")
    assert "Paris" in block(pipeline, made["place"], "Where was this photo taken?")
    served = TargetModel(Path("served.gguf"), 0, lambda text: [], local=False)
    assert "Paris" not in block(pipeline, made["place"], "Where was this photo taken?", served)
    shared = ImagePipeline(VisionConfig(threads=2, share_location=True), tmp_path / "cache")
    assert "Paris" in block(shared, made["place"], "Where was this photo taken?", served)


def test_the_labelled_set_has_twenty_photos_with_neutral_names(tmp_path: Path) -> None:
    made = build(tmp_path)
    assert len(made) >= 20 and len({c.topic for c, _ in made}) >= 7
    for _case, path in made:
        assert re.fullmatch(r"photo-\d\d\.jpg", path.name)
        assert Image.open(path).size[0] >= 200
    assert cases()[0].right("It is a cat.") and not cases()[0].right("It indicates nothing.")


def test_pages_receipts_and_dialogs_add_no_people(pipeline: ImagePipeline, tmp_path: Path) -> None:
    # HOG's weights on text reach those of real people (people/finder.py): people are
    # counted from faces, so a rendered receipt is never "a person".
    from rendered_images import all_cases

    for case in all_cases():
        path = tmp_path / f"{case.name}.png"
        case.image.save(path)
        text = block(pipeline, path, "Who or what is in this picture?")
        assert not re.search(r"\b(person|people)\b", text), (case.name, text)
