"""Search and structure in embedding space: exact cosine top-k, k-means, PCA colours, 2-D maps.

Top-k is exact (no approximate index), computed as chunked matrix products so that a
million 384-d vectors never need an N x N similarity matrix: memory is one
``queries x chunk`` block plus the running top-k. Results are ordered by score, ties
by index, so they equal a plain numpy argsort on the full matrix.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np

__all__ = [
    "kmeans",
    "knn_accuracy",
    "l2_normalize",
    "nearest_others",
    "pca",
    "pca_rgb",
    "project_2d",
    "top_k_cosine",
]


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, eps)


def _merge(scores: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` per row by (score desc, index asc)."""
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition may cut through a tie at the k-th score: keep every tied candidate
        kth = np.take_along_axis(scores, part, 1).min(axis=1, keepdims=True)
        keep = scores >= kth
        if keep.sum(axis=1).max() > k:
            order = np.lexsort((index, -scores), axis=1)[:, :k]
            return np.take_along_axis(scores, order, 1), np.take_along_axis(index, order, 1)
        scores, index = np.take_along_axis(scores, part, 1), np.take_along_axis(index, part, 1)
    order = np.lexsort((index, -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(index, order, 1)


def top_k_cosine(
    queries: np.ndarray,
    bank: np.ndarray,
    k: int = 10,
    *,
    chunk: int = 65536,
    query_chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k of each query in ``bank``: ``(scores (Q, k), indices (Q, k))``.

    A query that is itself in the bank finds itself first (score 1). ``chunk`` bank rows
    and ``query_chunk`` queries are compared at a time.
    """
    q = l2_normalize(np.atleast_2d(queries))
    b = l2_normalize(bank)
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dims, the bank {b.shape[1]}")
    k = min(int(k), b.shape[0])
    if k < 1:
        raise ValueError("k must be >= 1 and the bank non-empty")
    out_s = np.empty((q.shape[0], k), np.float32)
    out_i = np.empty((q.shape[0], k), np.int64)
    for qs in range(0, q.shape[0], query_chunk):
        qb = q[qs : qs + query_chunk]
        best_s = np.empty((qb.shape[0], 0), np.float32)
        best_i = np.empty((qb.shape[0], 0), np.int64)
        for bs in range(0, b.shape[0], chunk):
            sims = qb @ b[bs : bs + chunk].T
            idx = np.broadcast_to(np.arange(bs, bs + sims.shape[1]), sims.shape)
            best_s, best_i = _merge(
                np.concatenate([best_s, sims], 1), np.concatenate([best_i, idx], 1), k
            )
        out_s[qs : qs + len(qb)], out_i[qs : qs + len(qb)] = best_s, best_i
    return out_s, out_i


def nearest_others(
    x: np.ndarray, k: int = 10, *, rows: Sequence[int] | None = None, **chunks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` most similar *other* rows of ``x``: ``(scores (Q, k), indices (Q, k))``.

    What an explorer lists for a chip (itself, first at cosine 1, says nothing). ``rows``
    picks the query rows (default: all). A row that does not find itself among its
    ``k + 1`` best (exact duplicates of lower index took the places) keeps its ``k`` best.
    ``chunks`` go to :func:`top_k_cosine`.
    """
    rows_ = np.arange(len(x)) if rows is None else np.asarray(rows, dtype=np.int64).ravel()
    k = max(0, min(int(k), len(x) - 1))
    if k == 0:
        return np.zeros((len(rows_), 0), np.float32), np.zeros((len(rows_), 0), np.int64)
    scores, idx = top_k_cosine(np.asarray(x)[rows_], x, k + 1, **chunks)
    keep = idx != rows_[:, None]
    keep[keep.all(axis=1), -1] = False
    return scores[keep].reshape(len(rows_), k), idx[keep].reshape(len(rows_), k)


def kmeans(x: np.ndarray, n_clusters: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means on unit-length embeddings (spherical-ish): ``(labels (N,), centres (K, D))``."""
    from sklearn.cluster import KMeans

    n_clusters = min(int(n_clusters), len(x))
    model = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(l2_normalize(x))
    return model.labels_.astype(np.int64), model.cluster_centers_.astype(np.float32)


def pca(x: np.ndarray, n_components: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Scores on the first principal axes and their explained variance ratios.

    Signs are fixed (largest |loading| positive) so reruns give the same colours.
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    n = min(n_components, vt.shape[0])
    vt = vt[:n]
    signs = np.sign(vt[np.arange(n), np.abs(vt).argmax(axis=1)])
    vt = vt * signs[:, None]
    ratio = s[:n] ** 2 / max(float((s**2).sum()), 1e-30)
    return (centred @ vt.T).astype(np.float32), ratio.astype(np.float32)


def pca_rgb(x: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)) -> np.ndarray:
    """First three principal components stretched to [0, 1] colours (N, 3)."""
    scores, _ = pca(x, 3)
    if scores.shape[1] < 3:
        scores = np.pad(scores, ((0, 0), (0, 3 - scores.shape[1])))
    lo, hi = np.percentile(scores, percentiles, axis=0)
    return np.clip((scores - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)


def project_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, str]:
    """A 2-D projection and the method actually used (UMAP falls back to PCA, with a message)."""
    if method == "umap":
        if importlib.util.find_spec("umap") is None:
            print("NOTE: umap-learn is not installed; projecting with PCA instead")
            method = "pca"
        else:
            import umap

            reducer = umap.UMAP(n_components=2, random_state=seed, metric="cosine", n_jobs=1)
            return reducer.fit_transform(np.asarray(x, np.float32)).astype(np.float32), "umap"
    if method != "pca":
        raise ValueError(f"unknown projection {method!r}; expected 'pca' or 'umap'")
    return pca(x, 2)[0], "pca"


def knn_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    k: int = 20,
) -> float:
    """Accuracy of a cosine kNN majority vote (ties to the smaller class) on frozen embeddings."""
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if len(test_y) == 0:
        raise ValueError("no test samples")
    _, idx = top_k_cosine(test_x, train_x, k)
    votes = train_y[idx]
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    counts = np.stack([(votes == c).sum(axis=1) for c in range(n_classes)], axis=1)
    return float((counts.argmax(axis=1) == test_y).mean())
