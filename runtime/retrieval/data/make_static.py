"""Regenerates static-vectors.npz, the static token vectors askgpt's retrieval uses to
find candidate passages cheaply (a maintainer script; needs torch and transformers, which
askgpt's answering path never imports).

Distilled the way Model2Vec distils a sentence encoder: every WordPiece token of
all-MiniLM-L6-v2 is run through the full model alone ("[CLS] token [SEP]", mean-pooled as
the model pools sentences), the vectors are centred and reduced by PCA to 256 dimensions,
and each row is stored as int8 with its own scale. A passage is then scored by MaxSim over
those rows (runtime/retrieval/rank.py): no transformer runs over the whole input, so every
passage of a 100k-token input is scored in a second or two. The full model (the shipped
GGUF) re-ranks only the best candidates.

    python runtime/retrieval/data/make_static.py /path/to/all-MiniLM-L6-v2-folder
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

DIMENSIONS = 256


def token_vectors(folder: Path) -> np.ndarray:
    import torch
    from transformers import BertModel, BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(folder)
    model = BertModel.from_pretrained(folder).eval()
    n = model.config.vocab_size
    ids = torch.arange(n).unsqueeze(1)
    cls = torch.full_like(ids, tok.cls_token_id)
    sep = torch.full_like(ids, tok.sep_token_id)
    batch = torch.cat([cls, ids, sep], dim=1)
    out = np.zeros((n, model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for lo in range(0, n, 2048):
            hidden = model(input_ids=batch[lo:lo + 2048]).last_hidden_state
            out[lo:lo + 2048] = hidden.mean(dim=1).numpy()  # mean pooling, as the model's 1_Pooling
    return out


def compress(vectors: np.ndarray, dims: int = DIMENSIONS) -> tuple[np.ndarray, np.ndarray]:
    """PCA to ``dims`` (centred), then int8 rows with a float32 scale each."""
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ vt[:dims].T
    scale = np.abs(reduced).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    return np.round(reduced / scale[:, None]).astype(np.int8), scale.astype(np.float32)


def main(folder: str) -> None:
    rows, scale = compress(token_vectors(Path(folder)))
    out = Path(__file__).with_name("static-vectors.npz")
    np.savez_compressed(out, rows=rows, scale=scale)
    print(f"{out}: {rows.shape[0]} tokens x {rows.shape[1]} dims, {out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main(sys.argv[1])
