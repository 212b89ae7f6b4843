"""A tiny valid GGUF model, and malformed variants of it: the safety corpus.

    python tests/gguf_corpus.py OUT_DIR     # writes base.gguf and the malformed files

The cases follow llama.cpp's tests/test-gguf.cpp: truncation at every
structural boundary, flipped bytes, oversized counts and string lengths, bad
types, bad offsets, wrong alignment, duplicate keys and tensors.
"""

from __future__ import annotations

import random
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _byte_tokens() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values (byte-level BPE vocabularies)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    extra = 0
    table = {}
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def write_base(path: Path, *, seed: int = 0, arch: str = "llama", controls: tuple[str, ...] = (),
               chat_template: str | None = None, add_bos: bool = False) -> None:
    """A one-layer Llama with a 258-token byte vocabulary: llama.cpp loads and runs it
    (``arch`` other than "llama" makes a well-formed file llama.cpp refuses). ``controls``
    are more control tokens after ``<s>`` and ``</s>`` (with a ``chat_template`` that uses
    them: another family's template on a real tokenizer)."""
    import gguf

    rng = np.random.default_rng(seed)
    n_vocab, n_embd, n_ff, n_head = 258 + len(controls), 32, 64, 2
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("corpus-base")
    w.add_context_length(512)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_file_type(0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(_byte_tokens() + ["<s>", "</s>", *controls])
    w.add_token_types([1] * 256 + [3] * (2 + len(controls)))
    w.add_token_merges(["Ġ t"])
    w.add_bos_token_id(256)
    w.add_eos_token_id(257)
    w.add_add_bos_token(add_bos)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    def t(name: str, *shape: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        t(f"blk.0.{name}.weight", n_embd, n_embd)
    t("blk.0.ffn_gate.weight", n_ff, n_embd)
    t("blk.0.ffn_up.weight", n_ff, n_embd)
    t("blk.0.ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def boundaries(data: bytes) -> list[int]:
    """Offsets where a structure of the header starts or ends (after magic, version,
    counts, each key, type, value and tensor info), found by walking the header."""
    out = [0, 4, 8, 16, 24]
    pos = 24
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)

    def string(p: int) -> int:
        (n,) = struct.unpack_from("<Q", data, p)
        return p + 8 + n

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    for _ in range(n_kv):
        pos = string(pos)
        out.append(pos)
        (kind,) = struct.unpack_from("<I", data, pos)
        pos += 4
        out.append(pos)
        if kind == 8:
            pos = string(pos)
        elif kind == 9:
            elem, count = struct.unpack_from("<IQ", data, pos)
            pos += 12
            out.append(pos)
            for _ in range(count):
                pos = string(pos) if elem == 8 else pos + sizes[elem]
        else:
            pos += sizes[kind]
        out.append(pos)
    for _ in range(n_tensors):
        pos = string(pos)
        (n_dims,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * n_dims + 4 + 8
        out.append(pos)
    return sorted(set(out))


def cases(base: bytes, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of malformed files, at least 200."""
    rng = random.Random(seed)
    bounds = boundaries(base)
    header_end = bounds[-1]
    for b in bounds:  # truncated at every boundary, and one byte either side
        for cut in (b - 1, b, b + 1):
            if 0 <= cut < len(base):
                yield f"truncated-at-{cut}", base[:cut]
    yield "truncated-in-data", base[: (header_end + len(base)) // 2]
    yield "empty", b""
    yield "magic-only", b"GGUF"
    for version in (0, 1, 4, 0xFFFFFFFF):
        yield f"version-{version}", base[:4] + struct.pack("<I", version) + base[8:]
    for field, offset in (("tensors", 8), ("kv", 16)):
        for value in (2**63, 2**40, 10**6, 0xFFFFFFFFFFFFFFFF):
            yield f"{field}-count-{value}", base[:offset] + struct.pack("<Q", value) + base[offset + 8:]
    for i in range(60):  # oversized lengths planted at random boundaries (string and array lengths)
        p = rng.choice(bounds[5:])
        if p + 8 <= header_end:
            value = rng.choice([2**63 - 1, 2**32, len(base), len(base) * 4])
            yield f"length-{i}-at-{p}", base[:p] + struct.pack("<Q", value) + base[p + 8:]
    for i in range(40):  # a type field set to an unknown value
        p = rng.choice(bounds[5:])
        if p + 4 <= header_end:
            yield f"type-{i}-at-{p}", base[:p] + struct.pack("<I", rng.choice([13, 99, 2**31])) + base[p + 4:]
    for i in range(80):  # bytes flipped in the header
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(header_end)] ^= 1 << rng.randrange(8)
        yield f"flipped-{i}", bytes(data)
    # tensor offsets: misaligned, past the end, overlapping (the last 8 bytes of a tensor info)
    infos = [b for b in bounds if b > bounds[4]][-11:]
    for j, end in enumerate(infos):
        for label, value in (("misaligned", 3), ("past-end", len(base) * 2), ("overlap", 0), ("huge", 2**63)):
            yield f"offset-{label}-{j}", base[:end - 8] + struct.pack("<Q", value) + base[end:]
    yield "random-bytes", bytes(rng.randrange(256) for _ in range(4096))
    yield "gguf-then-random", b"GGUF" + bytes(rng.randrange(256) for _ in range(4096))


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gguf-corpus")
    out.mkdir(parents=True, exist_ok=True)
    write_base(out / "base.gguf")
    base = (out / "base.gguf").read_bytes()
    n = 0
    for name, data in cases(base):
        (out / f"{name}.gguf").write_bytes(data)
        n += 1
    print(f"{n} malformed files and base.gguf in {out}")


if __name__ == "__main__":
    main()
