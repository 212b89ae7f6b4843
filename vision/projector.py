"""Projecting image features into the language model's input-embedding space, in closed form.

No images and no GPU: the classifier's final layer already holds one vector
per class (1000 x 1280), and the language model already holds an embedding
for each class's name (the mean of its tokens' ``token_embd`` rows, read from
the GGUF with the ``gguf`` package and dequantized). A ridge regression from
the first to the second gives a matrix W; an image's pooled feature (and its
top classes' vectors) then map through W to a few embedding rows. This is the
fit the globalmm project uses for llama.cpp projectors, from a classifier
head instead of CLIP text embeddings.

A fit depends on both models, so it is stored with both identities (the
classifier weights' hash, the hash of the GGUF's embedding table) and
refitted when either changes. Fitting takes about a second.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from askgpt.runtime.errors import ImageError
from askgpt.runtime.files import atomic_write_bytes
from askgpt.runtime.models.gguf import TensorData, read_tensor

RIDGE = 1.0
N_CLASS_ROWS = 3  # rows for the top classes, after the row for the whole image
FORMAT_VERSION = 1


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float = RIDGE) -> tuple[np.ndarray, np.ndarray]:
    """``W, b`` minimising ``|x W + b - y|^2 + lam |W|^2`` (the intercept unpenalised)."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = (x - x_mean).astype(np.float64), (y - y_mean).astype(np.float64)
    gram = xc.T @ xc + lam * np.eye(x.shape[1])
    w = np.linalg.solve(gram, xc.T @ yc)
    b = y_mean - x_mean @ w
    return w.astype(np.float32), b.astype(np.float32)


def table_identity(gguf_path: Path) -> str:
    """What the fit depends on in the language model: its token-embedding table."""
    table = _token_table(gguf_path)
    h = hashlib.sha256(str(int(table.tensor_type)).encode())
    h.update(np.ascontiguousarray(table.data).tobytes())
    return h.hexdigest()


def _token_table(gguf_path: Path) -> TensorData:
    try:
        tensor = read_tensor(gguf_path, "token_embd.weight")
    except Exception as exc:  # a malformed file (the walk) or gguf's ValueError/struct errors
        raise ImageError(f"cannot read the embedding table of {gguf_path.name}: {exc}") from exc
    if tensor is not None:
        return tensor
    raise ImageError(f"{gguf_path.name} has no token_embd.weight tensor to project images into")


def name_embeddings(gguf_path: Path, names: Sequence[str],
                    tokenize: Callable[[str], list[int]]) -> np.ndarray:
    """Mean input embedding of each name's tokens (with a leading space, as in running text)."""
    from gguf.quants import dequantize

    table = _token_table(gguf_path)
    ids = [tokenize(" " + name) or tokenize(name) for name in names]
    unique = sorted({i for row in ids for i in row})
    rows = dequantize(table.data[unique], table.tensor_type).astype(np.float32)
    where = {tok: k for k, tok in enumerate(unique)}
    return np.stack([rows[[where[t] for t in row]].mean(axis=0) for row in ids])


@dataclass(frozen=True, eq=False)
class Projector:
    w: np.ndarray  # (d_feature, n_embd)
    b: np.ndarray  # (n_embd,)
    class_vectors: np.ndarray  # (n_classes, d_feature): the inputs of the fit
    feature_scale: float  # pooled features are rescaled to the class vectors' mean norm
    target_norm: float  # mean norm of the name embeddings: rows are scaled to it
    encoder_id: str
    model_id: str

    @property
    def n_embd(self) -> int:
        return int(self.w.shape[1])

    def _map(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.w + self.b
        norms = np.linalg.norm(y, axis=-1, keepdims=True)
        return (y * (self.target_norm / np.maximum(norms, 1e-8))).astype(np.float32)

    def rows(self, pooled: np.ndarray, class_ids: Sequence[int], regions: np.ndarray | None = None) -> np.ndarray:
        """(1 + k + N_CLASS_ROWS, n_embd): the whole image, its k regions (CLIP's pooled
        patches, if given), then its top classes."""
        parts = [pooled[None, :]] if regions is None else [pooled[None, :], regions]
        features = np.vstack(parts).astype(np.float32)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        features = features * (self.feature_scale / np.maximum(norms, 1e-12))
        top = self.class_vectors[list(class_ids)[:N_CLASS_ROWS]]
        return self._map(np.vstack([features, top]))

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez(buf, w=self.w, b=self.b, class_vectors=self.class_vectors,
                 scalars=np.array([self.feature_scale, self.target_norm], np.float64),
                 ids=np.array([self.encoder_id, self.model_id, str(FORMAT_VERSION)]))
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path, *, encoder_id: str, model_id: str) -> Projector | None:
        """The stored fit, or None when it is missing, unreadable or made for other models."""
        try:
            with np.load(path, allow_pickle=False) as data:
                ids = [str(x) for x in data["ids"]]
                if ids != [encoder_id, model_id, str(FORMAT_VERSION)]:
                    return None
                scale, norm = (float(v) for v in data["scalars"])
                return cls(data["w"], data["b"], data["class_vectors"], scale, norm, encoder_id, model_id)
        except (OSError, KeyError, ValueError):
            return None


TRAINED_FILE = "projector.npz"


def trained_projector(encoder_folder: Path, gguf_path: Path, *, encoder_id: str) -> Projector | None:
    """A projector trained elsewhere, saved in this format as ``projector.npz`` in a CLIP
    encoder's folder; None when there is none. One made for another encoder or another
    language model is an error, not silently ignored."""
    path = encoder_folder / TRAINED_FILE
    if not path.is_file():
        return None
    model_id = table_identity(gguf_path)
    projector = Projector.load(path, encoder_id=encoder_id, model_id=model_id)
    if projector is None:
        raise ImageError(f"the projector {path} was made for another encoder or language model "
                         f"(this pair: {encoder_id[:21]}, model table {model_id[:12]})",
                         hint=f"remove it to use askgpt's closed-form fit, or train one for {gguf_path.name}")
    return projector


def fit_projector(class_vectors: np.ndarray, names: Sequence[str], gguf_path: Path,
                  tokenize: Callable[[str], list[int]], *, encoder_id: str, model_id: str) -> Projector:
    targets = name_embeddings(gguf_path, names, tokenize)
    w, b = fit_ridge(class_vectors, targets)
    return Projector(
        w, b, class_vectors.astype(np.float32),
        feature_scale=float(np.linalg.norm(class_vectors, axis=1).mean()),
        target_norm=float(np.linalg.norm(targets, axis=1).mean()),
        encoder_id=encoder_id, model_id=model_id,
    )


def projector_for(cache_dir: Path, class_vectors: Callable[[], np.ndarray], names: Sequence[str],
                  gguf_path: Path, tokenize: Callable[[str], list[int]], *, encoder_id: str,
                  notify: Callable[[str], None] | None = None) -> Projector:
    """The stored fit for this (encoder, model) pair, refitted when either has changed.
    ``class_vectors`` is called only to fit (the stored fit keeps its own copy)."""
    model_id = table_identity(gguf_path)
    path = cache_dir / "vision" / f"projector-{encoder_id[:12]}-{model_id[:12]}.npz"
    stored = Projector.load(path, encoder_id=encoder_id, model_id=model_id) if path.is_file() else None
    if stored is not None:
        return stored
    if notify is not None:
        notify(f"fitting the image projector for {gguf_path.name} (once; cached)")
    projector = fit_projector(class_vectors(), names, gguf_path, tokenize, encoder_id=encoder_id,
                              model_id=model_id)
    projector.save(path)
    return projector
