"""Training data: examples from a BEIR folder, triplets JSONL or distillation JSONL, and hard-negative mining.

Three inputs, one example type (:class:`TrainingExample`):

* a BEIR folder with a train qrels split (``qrels/train.tsv``): one example per relevant
  (query, document) pair, its hard negatives mined by :func:`mine_hard_negatives` (BM25 or the current
  model's own exact index, top-k minus the judged positives);
* triplets JSONL: ``{"query": str, "positive": str, "negative": str}`` or ``"negatives": [str, ...]``;
* distillation JSONL: ``{"query": str, "documents": [str, ...], "scores": [float, ...]}`` (teacher scores,
  one per document, ColBERTv2-style).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import CorruptIndexError, InvalidInputError
from ..evaluation import BeirDataset, load_beir

if TYPE_CHECKING:
    from ..encoder import ColBERTEncoder

logger = logging.getLogger(__name__)

__all__ = [
    "BM25",
    "EvaluationSet",
    "TrainingExample",
    "beir_examples",
    "mine_hard_negatives",
    "read_examples",
    "split_queries",
]

NegativeMining = Literal["bm25", "index", "none"]


@dataclass(frozen=True)
class TrainingExample:
    """One query and its documents.

    Attributes:
        query: the query text.
        documents: contrastive: the positive first, then its hard-negative pool; distillation: the
            documents the teacher scored.
        scores: teacher scores, one per document (distillation), else None.
    """

    query: str
    documents: tuple[str, ...]
    scores: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            raise InvalidInputError(f"query must be a non-empty str, got {self.query!r}.")
        object.__setattr__(self, "documents", tuple(self.documents))
        if not self.documents or not all(isinstance(d, str) and d.strip() for d in self.documents):
            raise InvalidInputError(
                f"documents must be a non-empty list of non-empty str (query {self.query[:60]!r}), got "
                f"{list(self.documents)[:3]!r}."
            )
        if self.scores is not None:
            scores = tuple(self.scores)
            if len(scores) != len(self.documents) or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in scores
            ):
                raise InvalidInputError(
                    f"scores must hold one finite number per document ({len(self.documents)}), got {list(scores)!r}."
                )
            object.__setattr__(self, "scores", tuple(float(s) for s in scores))


@dataclass(frozen=True)
class EvaluationSet:
    """A held-back set scored with the exact index: nDCG@10 of ``queries`` over ``corpus`` against ``qrels``.

    Attributes:
        corpus: document id -> text.
        queries: query id -> text.
        qrels: query id -> {document id -> judged score}.
    """

    corpus: dict[str, str] = field(repr=False)
    queries: dict[str, str] = field(repr=False)
    qrels: dict[str, dict[str, int]] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.corpus or not self.queries:
            raise InvalidInputError("EvaluationSet needs a non-empty corpus and queries.")
        missing = [q for q in self.qrels if q not in self.queries]
        if missing:
            raise InvalidInputError(f"qrels: judged queries without text: {missing[:5]}.")

    @classmethod
    def from_beir(
        cls,
        data: BeirDataset,
        *,
        query_ids: Sequence[str] | None = None,
        max_documents: int | None = None,
        seed: int = 0,
    ) -> EvaluationSet:
        """The judged queries of ``data`` (or ``query_ids``) over its corpus.

        ``max_documents`` keeps every document judged for those queries plus a seeded sample of the others, up to
        that many: a quick, easier proxy for per-epoch checks; leave it None for real numbers.
        """
        ids = list(data.qrels) if query_ids is None else list(query_ids)
        queries = {q: data.queries[q] for q in ids}
        qrels = {q: dict(data.qrels[q]) for q in ids}
        doc_ids = list(data.corpus)
        if max_documents is not None and max_documents < len(doc_ids):
            judged = {d for q in ids for d in data.qrels[q] if d in data.corpus}
            others = [d for d in doc_ids if d not in judged]
            random.Random(seed).shuffle(others)
            chosen = judged | set(others[: max(0, max_documents - len(judged))])
            doc_ids = [d for d in doc_ids if d in chosen]
        corpus = {d: _doc_text(data.corpus[d]) for d in doc_ids}
        return cls(corpus=corpus, queries=queries, qrels=qrels)

    def evaluate(
        self, encoder: ColBERTEncoder, *, metrics: Sequence[str] = ("ndcg@10", "recall@100"), batch_size: int = 32
    ) -> dict[str, float]:
        """Encode the corpus and queries with ``encoder``, search the exact index, score the run."""
        from ..evaluation import _parse_metric, evaluate
        from ..index import ExactIndex

        k = max(_parse_metric(m)[1] for m in metrics)
        index = ExactIndex()
        index.add(list(self.corpus), encoder.encode_documents(list(self.corpus.values()), batch_size=batch_size))
        query_ids = list(self.queries)
        hits = index.search(encoder.encode_queries([self.queries[q] for q in query_ids], batch_size=batch_size), k=k)
        run = {q: [h.id for h in row] for q, row in zip(query_ids, hits, strict=True)}
        return evaluate(run, self.qrels, metrics=metrics)


# ---------------------------------------------------------------------- reading
def read_examples(path: str | os.PathLike[str]) -> list[TrainingExample]:
    """Read a triplets or distillation JSONL file (the kind is told by each line's keys).

    Raises:
        InvalidInputError: ``path`` is not a file, or is empty.
        CorruptIndexError: a line is not JSON or lacks the keys, naming the file and line number.
    """
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"path: {str(file)!r} is not a file; pass a triplets or distillation JSONL file.")
    examples: list[TrainingExample] = []
    with file.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                examples.append(_example(record))
            except (json.JSONDecodeError, InvalidInputError, KeyError, TypeError) as exc:
                raise CorruptIndexError(
                    f"{file}:{number}: expected {{'query', 'positive', 'negative'|'negatives'}} or "
                    f"{{'query', 'documents', 'scores'}}: {exc}"
                ) from exc
    if not examples:
        raise InvalidInputError(f"path: {str(file)!r} holds no examples.")
    return examples


def _example(record: Any) -> TrainingExample:
    if not isinstance(record, dict):
        raise TypeError(f"a line holds {type(record).__name__}, not an object")
    if "documents" in record:
        return TrainingExample(record["query"], tuple(record["documents"]), tuple(record["scores"]))
    negatives = record.get("negatives")
    if negatives is None:
        negatives = [record["negative"]] if "negative" in record else []
    if isinstance(negatives, str) or not isinstance(negatives, list):
        raise TypeError("negatives must be a list of str")
    return TrainingExample(record["query"], (record["positive"], *negatives))


def _doc_text(doc: Mapping[str, str]) -> str:
    from ..evaluation import document_text

    return document_text(doc.get("title"), doc.get("text"))


def split_queries(query_ids: Sequence[str], holdout: float, *, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(train, held_back)`` query ids: a seeded ``holdout`` fraction held back (at least one when > 0)."""
    if not isinstance(holdout, (int, float)) or isinstance(holdout, bool) or not 0 <= holdout < 1:
        raise InvalidInputError(f"holdout must be a fraction in [0, 1), got {holdout!r}.")
    ids = list(query_ids)
    shuffled = ids[:]
    random.Random(seed).shuffle(shuffled)
    n = 0 if holdout == 0 else max(1, round(holdout * len(ids)))
    held = set(shuffled[:n])
    return [q for q in ids if q not in held], [q for q in ids if q in held]


def beir_examples(
    data: str | os.PathLike[str] | BeirDataset,
    *,
    split: str = "train",
    negatives: NegativeMining = "bm25",
    n_negatives: int = 16,
    encoder: ColBERTEncoder | None = None,
    query_ids: Sequence[str] | None = None,
    mined: Mapping[str, Sequence[str]] | None = None,
) -> list[TrainingExample]:
    """One example per relevant (query, document) pair of a BEIR split, with mined hard negatives.

    Args:
        data: a BEIR folder (read with :func:`~lateint_plugins.core.evaluation.load_beir`) or a loaded split.
        split: the qrels split to train on (``"train"``).
        negatives: ``"bm25"``, ``"index"`` (the ``encoder``'s own exact index) or ``"none"`` (in-batch only).
        n_negatives: hard negatives kept per query (the top of the ranking minus the judged positives).
        encoder: the model mining with ``negatives="index"``.
        query_ids: only these queries (e.g. the training part of :func:`split_queries`).
        mined: precomputed query id -> ranked document ids (skips mining; judged positives are dropped).
    """
    dataset = data if isinstance(data, BeirDataset) else load_beir(data, split=split)
    if negatives not in ("bm25", "index", "none"):
        raise InvalidInputError(f"negatives must be 'bm25', 'index' or 'none', got {negatives!r}.")
    if not isinstance(n_negatives, int) or isinstance(n_negatives, bool) or n_negatives < 0:
        raise InvalidInputError(f"n_negatives must be an int >= 0, got {n_negatives!r}.")
    ids = list(dataset.qrels) if query_ids is None else list(query_ids)
    unknown = [q for q in ids if q not in dataset.qrels]
    if unknown:
        raise InvalidInputError(f"query_ids: {len(unknown)} id(s) not judged in split {split!r}: {unknown[:5]}.")
    if mined is None and negatives != "none" and n_negatives > 0:
        mined = mine_hard_negatives(dataset, method=negatives, depth=n_negatives, encoder=encoder, query_ids=ids)
    examples = []
    for q in ids:
        ranked = [d for d in (mined or {}).get(q, []) if d in dataset.corpus and dataset.qrels[q].get(d, 0) <= 0]
        pool = [_doc_text(dataset.corpus[d]) for d in ranked[:n_negatives]]
        for doc_id, score in dataset.qrels[q].items():
            if score > 0 and doc_id in dataset.corpus:
                examples.append(TrainingExample(dataset.queries[q], (_doc_text(dataset.corpus[doc_id]), *pool)))
    if not examples:
        raise InvalidInputError(f"split {split!r} has no relevant (query, document) pair to train on.")
    return examples


# ---------------------------------------------------------------------- mining
def mine_hard_negatives(
    data: BeirDataset,
    *,
    method: Literal["bm25", "index"] = "bm25",
    depth: int = 16,
    encoder: ColBERTEncoder | None = None,
    query_ids: Sequence[str] | None = None,
    batch_size: int = 32,
) -> dict[str, list[str]]:
    """Query id -> the ``depth`` best-ranked documents that are not judged relevant, best first.

    ``method="index"`` encodes the corpus with ``encoder`` into an exact index (the current model's own
    ranking, ColBERTv2's recipe); ``"bm25"`` uses :class:`BM25`. Documents judged ``> 0`` are never
    negatives (unjudged relevant ones can be: the usual risk of mined negatives).
    """
    ids = list(data.qrels) if query_ids is None else list(query_ids)
    doc_ids = list(data.corpus)
    texts = [_doc_text(data.corpus[d]) for d in doc_ids]
    wanted = depth + max((len(data.qrels[q]) for q in ids), default=0)
    if method == "bm25":
        bm25 = BM25(texts)
        ranked = {q: [doc_ids[i] for i, _ in bm25.search(data.queries[q], k=wanted)] for q in ids}
    elif method == "index":
        if encoder is None:
            raise InvalidInputError("encoder: negatives='index' mines with a model's own index; pass encoder=.")
        from ..index import ExactIndex

        index = ExactIndex()
        index.add(doc_ids, encoder.encode_documents(texts, batch_size=batch_size))
        hits = index.search(encoder.encode_queries([data.queries[q] for q in ids], batch_size=batch_size), k=wanted)
        ranked = {q: [h.id for h in row] for q, row in zip(ids, hits, strict=True)}
    else:
        raise InvalidInputError(f"method must be 'bm25' or 'index', got {method!r}.")
    return {q: [d for d in ranked[q] if data.qrels[q].get(d, 0) <= 0][:depth] for q in ids}


_WORD = re.compile(r"\w+", re.UNICODE)


class BM25:
    """Okapi BM25 over whitespace-free word tokens (lowercased ``\\w+``), in pure Python.

    Enough for mining negatives from corpora of up to ~10^5 documents; ``k1`` and ``b`` default to
    Anserini's (0.9, 0.4).
    """

    def __init__(self, texts: Sequence[str], *, k1: float = 0.9, b: float = 0.4) -> None:
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
            raise InvalidInputError("texts: expected a non-empty list of document texts.")
        self.k1, self.b = float(k1), float(b)
        self._postings: dict[str, list[tuple[int, int]]] = {}
        lengths = []
        for i, text in enumerate(texts):
            counts = Counter(_WORD.findall(text.lower()))
            lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                self._postings.setdefault(term, []).append((i, tf))
        self._lengths = lengths
        self._average = max(sum(lengths) / len(lengths), 1e-9)
        n = len(lengths)
        self._idf = {t: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in self._postings.items()}

    def search(self, query: str, k: int = 100) -> list[tuple[int, float]]:
        """``(document position, score)`` of the ``k`` best documents, best first (ties by position)."""
        scores: dict[int, float] = {}
        for term in _WORD.findall(query.lower()):
            idf = self._idf.get(term)
            if idf is None:
                continue
            for i, tf in self._postings[term]:
                norm = self.k1 * (1 - self.b + self.b * self._lengths[i] / self._average)
                scores[i] = scores.get(i, 0.0) + idf * tf * (self.k1 + 1) / (tf + norm)
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
