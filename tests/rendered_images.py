"""Images with known text, rendered with Pillow's built-in font, for OCR tests and benchmarks.

Each case gives the image, the lines drawn on it (the OCR reference), and a
question with the words its answer must contain.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont


@dataclass(frozen=True)
class TextImage:
    name: str
    image: Image.Image
    lines: tuple[str, ...]
    question: str
    answer: str  # a regular expression the answer must match


def _draw(lines: list[str], *, size: int = 28, width: int = 560, fg: str = "black", bg: str = "white",
          x: int = 30, step: float = 1.9) -> Image.Image:
    font = ImageFont.load_default(size=size)
    img = Image.new("RGB", (width, int(40 + step * size * len(lines))), bg)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((x, 20 + i * step * size), line, fill=fg, font=font)
    return img


def receipt() -> TextImage:
    lines = ["CORNER CAFE", "12 Main Street", "Cappuccino 3.50", "Blueberry muffin 2.25",
             "Orange juice 4.10", "TOTAL DUE 9.85", "Thank you!"]
    return TextImage("receipt", _draw(lines), tuple(lines), "What is the total due?", r"9\.85")


def error_dialog() -> TextImage:
    lines = ["Error", "Disk full: cannot save report.docx", "Free up space and try again.", "OK"]
    img = _draw(lines, width=640)
    ImageDraw.Draw(img).rectangle([5, 5, img.width - 6, img.height - 6], outline="gray", width=3)
    return TextImage("dialog", img, tuple(lines), "What does the error message say?", r"(?i)disk (is )?full")


def two_columns() -> TextImage:
    left = ["Opening hours", "Monday to Friday", "9am to 5pm"]
    right = ["Contact", "Phone 555 0199", "Closed on Sunday"]
    font = ImageFont.load_default(size=24)
    img = Image.new("RGB", (760, 200), "white")
    draw = ImageDraw.Draw(img)
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        draw.text((20, 20 + 50 * i), a, fill="black", font=font)
        draw.text((420, 20 + 50 * i), b, fill="black", font=font)
    lines = tuple(f"{a} {b}" for a, b in zip(left, right, strict=True))
    return TextImage("two-columns", img, lines, "What is the phone number?", r"555.?0199")


def small_font() -> TextImage:
    lines = ["Meeting moved to room 42", "Bring the quarterly budget"]
    return TextImage("small-font", _draw(lines, size=14, width=300), tuple(lines), "Which room is the meeting in?",
                     r"42")


def rotated() -> TextImage:
    base = receipt()
    img = base.image.rotate(4, expand=True, fillcolor="white")
    return TextImage("rotated", img, base.lines, base.question, base.answer)


def low_contrast() -> TextImage:
    lines = ["Parking permit", "Valid until 30 June", "Zone B"]
    img = _draw(lines, fg="#9a9a9a", bg="#d8d8d8")
    return TextImage("low-contrast", img, tuple(lines), "Which zone is the permit for?", r"\bB\b")


def all_cases() -> list[TextImage]:
    return [receipt(), error_dialog(), two_columns(), small_font(), rotated(), low_contrast()]


def char_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over characters, ignoring spaces, divided by the reference length."""
    ref, hyp = reference.replace(" ", ""), hypothesis.replace(" ", "")
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(1, len(ref))
