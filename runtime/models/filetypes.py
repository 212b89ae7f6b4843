"""llama.cpp's file types (``general.file_type``, LLAMA_FTYPE_*): the one table.

`askgpt models info` names a file's type from it; `askgpt convert` writes the
types that have bits and a note, listed by `convert types` in this order (least
loss first). The bits per weight are those of the type's block format (e.g.
Q4_0 stores 32 weights in 16 bytes of 4-bit values plus one f16 scale: 4.5 bits).
A file's measured figure is a little higher for the _M/_S/_L mixes, which keep
some tensors (the output layer, parts of attention) in a larger type; `convert
quantize` reports the measured figure.
"""

from __future__ import annotations

from dataclasses import dataclass

from askgpt.runtime.errors import UsageError


@dataclass(frozen=True)
class FileType:
    name: str  # as llama-quantize prints it
    ftype: int  # llama.cpp's LLAMA_FTYPE_* value
    bits: float = 0.0  # bits per weight of the main block format (types askgpt writes)
    note: str = ""  # what the type costs (types askgpt writes)

    @property
    def writable(self) -> bool:
        """askgpt convert writes it (F32/F16/BF16 itself, the others through llama.cpp's quantizer)."""
        return self.bits > 0


FILE_TYPES: tuple[FileType, ...] = (
    FileType("F32", 0, 32.0, "no loss; reference for quality reports"),
    FileType("F16", 1, 16.0, "practically lossless"),
    FileType("BF16", 32, 16.0, "practically lossless, wider range than F16"),
    FileType("Q8_0", 7, 8.5, "near lossless"),
    FileType("Q6_K", 18, 6.5625, "very small loss"),
    FileType("Q5_K_M", 17, 5.5, "small loss; a good default for larger laptops"),
    FileType("Q5_K_S", 16, 5.5, "small loss"),
    FileType("Q5_1", 9, 6.0, "legacy"),
    FileType("Q5_0", 8, 5.5, "legacy"),
    FileType("Q4_K_M", 15, 4.5, "the usual choice: moderate loss, small file"),
    FileType("Q4_K_S", 14, 4.5, "moderate loss"),
    FileType("Q4_1", 3, 5.0, "legacy (the built-in model's type)"),
    FileType("Q4_0", 2, 4.5, "legacy, fast on some CPUs"),
    FileType("IQ4_NL", 25, 4.5, "non-linear 4-bit"),
    FileType("IQ4_XS", 30, 4.25, "non-linear 4-bit, smaller"),
    FileType("Q3_K_L", 13, 3.4375, "large loss"),
    FileType("Q3_K_M", 12, 3.4375, "large loss"),
    FileType("Q3_K_S", 11, 3.4375, "large loss"),
    FileType("Q2_K", 10, 2.625, "very large loss; for experiments"),
    # read, not written (they need an importance matrix, or are for other hardware)
    FileType("IQ2_XXS", 19), FileType("IQ2_XS", 20), FileType("Q2_K_S", 21), FileType("IQ3_XS", 22),
    FileType("IQ3_XXS", 23), FileType("IQ1_S", 24), FileType("IQ3_S", 26), FileType("IQ3_M", 27),
    FileType("IQ2_S", 28), FileType("IQ2_M", 29), FileType("IQ1_M", 31), FileType("TQ1_0", 36),
    FileType("TQ2_0", 37), FileType("MXFP4_MOE", 38), FileType("NVFP4", 39), FileType("Q1_0", 40),
)
OUTPUT_TYPES: tuple[FileType, ...] = tuple(t for t in FILE_TYPES if t.writable)
FILE_TYPE_NAMES: dict[int, str] = {t.ftype: t.name for t in FILE_TYPES}


def file_type_name(ftype: int | None) -> str:
    """A header's general.file_type as `models info` shows it."""
    if ftype is None:
        return "?"
    return FILE_TYPE_NAMES.get(ftype, f"type {ftype}")


def output_type(name: str) -> FileType:
    for t in OUTPUT_TYPES:
        if t.name.lower() == name.strip().lower():
            return t
    raise UsageError(f"unknown output type {name!r}", hint="see `askgpt convert types`")
