"""The output types askgpt can write, with what each costs in bits per weight.

The bits per weight are those of the type's block format (e.g. Q4_0 stores 32
weights in 16 bytes of 4-bit values plus one f16 scale: 4.5 bits). A file's
measured figure is a little higher for the _M/_S/_L mixes, which keep some
tensors (the output layer, parts of attention) in a larger type; `convert
quantize` reports the measured figure.
"""

from __future__ import annotations

from dataclasses import dataclass

from askgpt.runtime.errors import UsageError


@dataclass(frozen=True)
class OutputType:
    name: str
    ftype: int  # llama.cpp's LLAMA_FTYPE_* value
    bits: float  # bits per weight of the main block format
    note: str


TYPES: tuple[OutputType, ...] = (
    OutputType("F32", 0, 32.0, "no loss; reference for quality reports"),
    OutputType("F16", 1, 16.0, "practically lossless"),
    OutputType("BF16", 32, 16.0, "practically lossless, wider range than F16"),
    OutputType("Q8_0", 7, 8.5, "near lossless"),
    OutputType("Q6_K", 18, 6.5625, "very small loss"),
    OutputType("Q5_K_M", 17, 5.5, "small loss; a good default for larger laptops"),
    OutputType("Q5_K_S", 16, 5.5, "small loss"),
    OutputType("Q5_1", 9, 6.0, "legacy"),
    OutputType("Q5_0", 8, 5.5, "legacy"),
    OutputType("Q4_K_M", 15, 4.5, "the usual choice: moderate loss, small file"),
    OutputType("Q4_K_S", 14, 4.5, "moderate loss"),
    OutputType("Q4_1", 3, 5.0, "legacy (the built-in model's type)"),
    OutputType("Q4_0", 2, 4.5, "legacy, fast on some CPUs"),
    OutputType("IQ4_NL", 25, 4.5, "non-linear 4-bit"),
    OutputType("IQ4_XS", 30, 4.25, "non-linear 4-bit, smaller"),
    OutputType("Q3_K_L", 13, 3.4375, "large loss"),
    OutputType("Q3_K_M", 12, 3.4375, "large loss"),
    OutputType("Q3_K_S", 11, 3.4375, "large loss"),
    OutputType("Q2_K", 10, 2.625, "very large loss; for experiments"),
)


def output_type(name: str) -> OutputType:
    for t in TYPES:
        if t.name.lower() == name.strip().lower():
            return t
    raise UsageError(f"unknown output type {name!r}", hint="see `askgpt convert types`")
