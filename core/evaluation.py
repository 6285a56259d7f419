"""Read BEIR datasets and score rankings with nDCG@k, Recall@k and MRR@k.

Pure Python and the standard library only, so evaluating a run never imports torch or numpy.

**Data.** :func:`load_beir` reads the standard BEIR folder layout::

    <path>/corpus.jsonl        {"_id", "title", "text"} per line
    <path>/queries.jsonl       {"_id", "text"} per line
    <path>/qrels/<split>.tsv   "query-id<TAB>corpus-id<TAB>score", one header line

and keeps only the queries judged in the chosen split (``queries.jsonl`` usually holds every
split's queries; evaluating all of them against ``test.tsv`` is a classic mistake).

**Metrics.** The definitions follow ``pytrec_eval`` (``trec_eval``), which BEIR uses:

* a document is *relevant* when its judged score is ``> 0``; unjudged documents count as 0;
* ``ndcg@k``: DCG with linear gain (the judged score itself) and a ``log2(rank + 1)`` discount,
  divided by the ideal DCG of the query's judged scores sorted in decreasing order and cut at ``k``
  (``trec_eval``'s ``ndcg_cut.k``);
* ``recall@k``: relevant documents in the top ``k`` divided by all relevant documents of the query
  (``recall.k``);
* ``mrr@k``: ``1 / rank`` of the first relevant document in the top ``k``, else 0 (BEIR's ``MRR@k``);
* a query whose judgments are all ``<= 0`` scores 0 on every metric, as in ``pytrec_eval``.

:func:`evaluate` averages over **every query in the qrels**; a query absent from the run scores 0
(``trec_eval -c``). BEIR's ``EvaluateRetrieval.evaluate`` instead averages over the queries present
in the run, so the two agree only when the run covers every judged query. Queries in the run but not
in the qrels are ignored. Unlike BEIR, this module does not drop documents whose id equals the query
id; rank them out yourself if your corpus needs it.

Example::

    data = load_beir("shared/data/scifact", split="test")
    ids, texts = data.document_texts()
    run = {qid: my_search(text, k=100) for qid, text in data.queries.items()}
    evaluate(run, data.qrels, metrics=("ndcg@10", "recall@100"))
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorruptIndexError, InvalidInputError

logger = logging.getLogger(__name__)

__all__ = [
    "SUPPORTED_METRICS",
    "BeirDataset",
    "evaluate",
    "load_beir",
    "mrr_at_k",
    "ndcg_at_k",
    "recall_at_k",
]

SUPPORTED_METRICS: tuple[str, ...] = ("ndcg", "recall", "mrr")
"""Metric families accepted by :func:`evaluate`, each written as ``"<family>@<k>"``."""

_DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def document_text(title: str | None, text: str | None) -> str:
    """The text a document is scored by, BEIR's convention: ``title + " " + text``, stripped (either may be missing)."""
    return f"{title or ''} {text or ''}".strip()


@dataclass(frozen=True)
class BeirDataset:
    """One split of a BEIR dataset, as returned by :func:`load_beir`.

    Args:
        corpus: document id -> ``{"title": ..., "text": ...}``, in file order.
        queries: query id -> query text, only the queries judged in ``split``.
        qrels: query id -> {document id -> judged score}; scores ``> 0`` mean relevant.
        name: a label for reports (:func:`load_beir` uses the folder name).
        split: the qrels split these queries and judgments come from.

    Raises:
        InvalidInputError: a judged query has no text in ``queries``.
    """

    corpus: dict[str, dict[str, str]] = field(repr=False)
    queries: dict[str, str] = field(repr=False)
    qrels: dict[str, dict[str, int]] = field(repr=False)
    name: str = ""
    split: str = "test"

    def __post_init__(self) -> None:
        missing = [qid for qid in self.qrels if qid not in self.queries]
        if missing:
            raise InvalidInputError(
                f"qrels: {len(missing)} judged query id(s) have no text in `queries` "
                f"(first: {_preview(missing)}); every query in qrels needs an entry in queries."
            )

    @property
    def num_documents(self) -> int:
        """Number of documents in the corpus."""
        return len(self.corpus)

    @property
    def num_queries(self) -> int:
        """Number of queries judged in this split."""
        return len(self.queries)

    @property
    def num_judged_pairs(self) -> int:
        """Number of (query, document) judgments in this split, relevant or not."""
        return sum(len(judged) for judged in self.qrels.values())

    def document_texts(self) -> tuple[list[str], list[str]]:
        """Return ``(ids, texts)`` for the corpus in file order, each text ``title + " " + text``.

        This is the BEIR convention for scoring a document; the result is stripped, so a document
        without a title is just its text.
        """
        ids = list(self.corpus)
        texts = [document_text(doc.get("title"), doc.get("text")) for doc in self.corpus.values()]
        return ids, texts

    def query_texts(self) -> tuple[list[str], list[str]]:
        """Return ``(ids, texts)`` for the judged queries, in the order they first appear in the qrels."""
        return list(self.queries), list(self.queries.values())

    def __repr__(self) -> str:
        return (
            f"BeirDataset(name={self.name!r}, split={self.split!r}, documents={self.num_documents}, "
            f"queries={self.num_queries}, judged_pairs={self.num_judged_pairs})"
        )


def load_beir(path: str | os.PathLike[str], split: str = "test") -> BeirDataset:
    """Load one split of a dataset stored in the BEIR folder layout.

    Only the queries that appear in ``qrels/<split>.tsv`` are kept (with all their judgments,
    including scores ``<= 0``). Judged documents missing from the corpus are allowed (they cannot
    be retrieved, so they only lower recall) and logged as a warning.

    Args:
        path: the dataset folder, holding ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/``.
        split: name of the qrels file to use, without ``.tsv`` (``"test"``, ``"train"``, ``"dev"``).

    Returns:
        The split's :class:`BeirDataset`, named after the folder.

    Raises:
        InvalidInputError: ``path`` is not a folder, a required file is missing, or ``split`` has no
            qrels file (the message lists the available splits).
        CorruptIndexError: a line cannot be parsed, an id is repeated, or a judged query has no
            text; the message names the file and the line number.
    """
    if not isinstance(split, str) or not split.strip() or os.sep in split or "/" in split:
        raise InvalidInputError(
            f"split: expected the name of a qrels file without '.tsv' (e.g. 'test'), got {split!r}."
        )
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"path: expected a folder path (str or Path), got {type(path).__name__}.")
    root = Path(path)
    if not root.is_dir():
        raise InvalidInputError(
            f"path: {str(root)!r} is not a folder; pass a BEIR dataset folder holding "
            "corpus.jsonl, queries.jsonl and qrels/<split>.tsv."
        )
    corpus_file = _required_file(root / "corpus.jsonl", root)
    queries_file = _required_file(root / "queries.jsonl", root)
    qrels_dir = root / "qrels"
    if not qrels_dir.is_dir():
        raise InvalidInputError(
            f"path: {str(root)!r} has no qrels/ folder; a BEIR dataset stores its judgments as qrels/<split>.tsv."
        )
    qrels_file = qrels_dir / f"{split}.tsv"
    if not qrels_file.is_file():
        available = sorted(p.stem for p in qrels_dir.glob("*.tsv") if p.is_file())
        raise InvalidInputError(
            f"split: no qrels file for split {split!r} in {str(qrels_dir)!r}; "
            f"available splits: {', '.join(map(repr, available)) or 'none'}."
        )

    qrels = _read_qrels(qrels_file)
    queries = _read_queries(queries_file, wanted=qrels.keys())
    missing_queries = [qid for qid in qrels if qid not in queries]
    if missing_queries:
        raise CorruptIndexError(
            f"{qrels_file}: {len(missing_queries)} judged query id(s) are not in {queries_file} "
            f"(first: {_preview(missing_queries)}); the qrels and queries files do not match."
        )
    # Keep queries in qrels order of first appearance for determinism across query files.
    queries = {qid: queries[qid] for qid in qrels}
    corpus = _read_corpus(corpus_file)

    missing_docs = {doc for judged in qrels.values() for doc in judged if doc not in corpus}
    if missing_docs:
        logger.warning(
            "%s: %d judged document id(s) are not in %s (first: %s); they count as unretrievable.",
            qrels_file,
            len(missing_docs),
            corpus_file,
            _preview(sorted(missing_docs)),
        )
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, name=root.name, split=split)


def _required_file(file: Path, root: Path) -> Path:
    if not file.is_file():
        raise InvalidInputError(
            f"path: {str(root)!r} has no {file.name}; a BEIR dataset folder needs corpus.jsonl, "
            "queries.jsonl and qrels/<split>.tsv."
        )
    return file


def _iter_lines(file: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for non-blank lines, turning decoding errors into corrupt-file errors."""
    try:
        # utf-8-sig: tolerate a byte-order mark written by some editors.
        with file.open(encoding="utf-8-sig", newline=None) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line.rstrip("\n")
    except UnicodeDecodeError as exc:
        raise CorruptIndexError(f"{file}: not valid UTF-8 ({exc.reason} at byte {exc.start}).") from exc


def _read_jsonl(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _iter_lines(file):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorruptIndexError(
                f"{file}, line {number}: invalid JSON ({exc.msg}); each line must be one JSON object."
            ) from exc
        if not isinstance(record, dict):
            raise CorruptIndexError(f"{file}, line {number}: expected a JSON object, got {type(record).__name__}.")
        yield number, record


def _record_id(record: Mapping[str, Any], file: Path, number: int) -> str:
    value = record.get("_id")
    # Some BEIR exports write numeric ids; qrels ids are always read as strings, so normalise.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise CorruptIndexError(f"{file}, line {number}: '_id' must be a non-empty string, got {value!r}.")
    return value


def _record_str(record: Mapping[str, Any], key: str, file: Path, number: int, *, default: str | None) -> str:
    value = record.get(key, default)
    if value is None and default is not None:
        value = default
    if not isinstance(value, str):
        raise CorruptIndexError(f"{file}, line {number}: {key!r} must be a string, got {value!r}.")
    return value


def _read_corpus(file: Path) -> dict[str, dict[str, str]]:
    corpus: dict[str, dict[str, str]] = {}
    first_line: dict[str, int] = {}
    for number, record in _read_jsonl(file):
        doc_id = _record_id(record, file, number)
        if doc_id in corpus:
            raise CorruptIndexError(
                f"{file}, line {number}: duplicate document id {doc_id!r} (first on line {first_line[doc_id]})."
            )
        title = _record_str(record, "title", file, number, default="")
        text = _record_str(record, "text", file, number, default=None)
        corpus[doc_id] = {"title": title, "text": text}
        first_line[doc_id] = number
    return corpus


def _read_queries(file: Path, wanted: Iterable[str]) -> dict[str, str]:
    keep = set(wanted)
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, record in _read_jsonl(file):
        query_id = _record_id(record, file, number)
        if query_id in first_line:
            raise CorruptIndexError(
                f"{file}, line {number}: duplicate query id {query_id!r} (first on line {first_line[query_id]})."
            )
        first_line[query_id] = number
        text = _record_str(record, "text", file, number, default=None)
        if query_id in keep:
            queries[query_id] = text
    return queries


def _read_qrels(file: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    first = True
    for number, line in _iter_lines(file):
        fields = [part.strip() for part in line.rstrip("\r").split("\t")]
        is_first, first = first, False
        if len(fields) != 3:
            if is_first and fields[0].lower() in {"query-id", "query_id", "qid"}:
                continue
            raise CorruptIndexError(
                f"{file}, line {number}: expected 3 tab-separated fields "
                f"(query-id, corpus-id, score), got {len(fields)}: {line!r}."
            )
        query_id, doc_id, raw_score = fields
        try:
            score = int(raw_score)
        except ValueError:
            # BEIR always writes a header line ("query-id corpus-id score"); accept a file without one.
            if is_first:
                continue
            raise CorruptIndexError(f"{file}, line {number}: score must be an integer, got {raw_score!r}.") from None
        if not query_id or not doc_id:
            raise CorruptIndexError(f"{file}, line {number}: empty query-id or corpus-id in {line!r}.")
        pair = (query_id, doc_id)
        if pair in seen:
            raise CorruptIndexError(
                f"{file}, line {number}: duplicate judgment for query {query_id!r} and document "
                f"{doc_id!r} (first on line {seen[pair]})."
            )
        seen[pair] = number
        qrels.setdefault(query_id, {})[doc_id] = score
    if not qrels:
        raise CorruptIndexError(f"{file}: no judgments found; expected lines 'query-id<TAB>corpus-id<TAB>score'.")
    return qrels


def _preview(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (", ..." if len(ids) > limit else "")


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def ndcg_at_k(ranked_ids: Sequence[str], qrels_for_query: Mapping[str, int], k: int) -> float:
    """nDCG@k of one ranking: linear gain, ``log2(rank + 1)`` discount, as ``trec_eval``'s ``ndcg_cut``.

    Args:
        ranked_ids: document ids, best first; ids must be unique.
        qrels_for_query: document id -> judged score for this query; missing ids score 0.
        k: cutoff, a positive integer.

    Returns:
        A value in ``[0, 1]``; 0 when the query has no relevant (score > 0) document.

    Raises:
        InvalidInputError: ``k`` is not a positive integer, or ``ranked_ids`` is not a sequence of
            unique strings.
    """
    _check_k(k)
    _check_ranking(ranked_ids)
    _check_qrels_for_query(qrels_for_query)
    return _ndcg(ranked_ids, qrels_for_query, k)


def recall_at_k(ranked_ids: Sequence[str], qrels_for_query: Mapping[str, int], k: int) -> float:
    """Recall@k of one ranking: relevant documents in the top ``k`` / all relevant documents.

    Args:
        ranked_ids: document ids, best first; ids must be unique.
        qrels_for_query: document id -> judged score for this query; relevant means score > 0.
        k: cutoff, a positive integer.

    Returns:
        A value in ``[0, 1]``; 0 when the query has no relevant document.

    Raises:
        InvalidInputError: ``k`` is not a positive integer, or ``ranked_ids`` is not a sequence of
            unique strings.
    """
    _check_k(k)
    _check_ranking(ranked_ids)
    _check_qrels_for_query(qrels_for_query)
    return _recall(ranked_ids, qrels_for_query, k)


def mrr_at_k(ranked_ids: Sequence[str], qrels_for_query: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant (score > 0) document in the top ``k``, else 0.

    Args:
        ranked_ids: document ids, best first; ids must be unique.
        qrels_for_query: document id -> judged score for this query.
        k: cutoff, a positive integer.

    Returns:
        ``1 / rank`` (rank counted from 1) or 0.

    Raises:
        InvalidInputError: ``k`` is not a positive integer, or ``ranked_ids`` is not a sequence of
            unique strings.
    """
    _check_k(k)
    _check_ranking(ranked_ids)
    _check_qrels_for_query(qrels_for_query)
    return _mrr(ranked_ids, qrels_for_query, k)


def evaluate(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Sequence[str] | str = _DEFAULT_METRICS,
) -> dict[str, float]:
    """Average each metric over every query in ``qrels``.

    Args:
        run: query id -> ranked document ids, best first. Queries missing from the run score 0;
            queries not in ``qrels`` are ignored.
        qrels: query id -> {document id -> judged score}, e.g. :attr:`BeirDataset.qrels`.
        metrics: names such as ``"ndcg@10"``, ``"recall@100"``, ``"mrr@10"`` (case-insensitive);
            a single string is treated as one metric.

    Returns:
        Metric name (lower-cased, as ``"ndcg@10"``) -> mean over the judged queries.

    Raises:
        InvalidInputError: an unknown metric or a cutoff that is not a positive integer, empty
            ``qrels``, or a ranking that is not a sequence of unique strings.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    if isinstance(metrics, Mapping) or not isinstance(metrics, Iterable):
        raise InvalidInputError(f"metrics: expected a list of names such as 'ndcg@10', got {type(metrics).__name__}.")
    parsed = [_parse_metric(name) for name in metrics]
    if not parsed:
        raise InvalidInputError(f"metrics: expected at least one metric such as 'ndcg@10', got {metrics!r}.")
    if not isinstance(run, Mapping):
        raise InvalidInputError(
            f"run: expected a mapping of query id -> ranked document ids, got {type(run).__name__}."
        )
    if not isinstance(qrels, Mapping) or not qrels:
        raise InvalidInputError(
            "qrels: expected a non-empty mapping of query id -> {document id: score}; there is nothing to average over."
        )

    totals = {f"{family}@{k}": 0.0 for family, k in parsed}
    for query_id, judged in qrels.items():
        _check_qrels_for_query(judged, name=f"qrels[{query_id!r}]")
        ranked = run.get(query_id, ())
        _check_ranking(ranked, name=f"run[{query_id!r}]")
        for family, k in parsed:
            totals[f"{family}@{k}"] += _METRICS[family](ranked, judged, k)
    return {name: total / len(qrels) for name, total in totals.items()}


def _ndcg(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    ideal_gains = sorted((score for score in judged.values() if score > 0), reverse=True)[:k]
    if not ideal_gains:
        return 0.0
    ideal = sum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal_gains, start=1))
    dcg = 0.0
    for rank, doc_id in enumerate(ranked[:k], start=1):
        # Non-positive judgments carry no gain (trec_eval treats them as non-relevant).
        gain = judged.get(doc_id, 0)
        if gain > 0:
            dcg += gain / math.log2(rank + 1)
    return dcg / ideal


def _recall(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = {doc_id for doc_id, score in judged.items() if score > 0}
    if not relevant:
        return 0.0
    hits = sum(1 for doc_id in ranked[:k] if doc_id in relevant)
    return hits / len(relevant)


def _mrr(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    for rank, doc_id in enumerate(ranked[:k], start=1):
        if judged.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


_METRICS = {"ndcg": _ndcg, "recall": _recall, "mrr": _mrr}


def _parse_metric(name: object) -> tuple[str, int]:
    if not isinstance(name, str):
        raise InvalidInputError(f"metrics: each metric must be a string like 'ndcg@10', got {name!r}.")
    family, sep, cutoff = name.strip().lower().partition("@")
    if family not in _METRICS:
        raise InvalidInputError(
            f"metrics: unknown metric {name!r}; supported: "
            f"{', '.join(f'{m}@k' for m in SUPPORTED_METRICS)} (for example 'ndcg@10')."
        )
    if not sep:
        raise InvalidInputError(f"metrics: {name!r} needs a cutoff, e.g. '{family}@10'.")
    try:
        k = int(cutoff)
    except ValueError:
        raise InvalidInputError(
            f"metrics: the cutoff in {name!r} must be a positive integer, e.g. '{family}@10'."
        ) from None
    if k <= 0:
        raise InvalidInputError(f"metrics: the cutoff in {name!r} must be a positive integer, got {k}.")
    return family, k


def _check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise InvalidInputError(f"k: expected a positive integer cutoff, got {k!r}.")


def _check_ranking(ranked: object, name: str = "ranked_ids") -> None:
    # A bare string is a Sequence of characters: almost always a caller bug.
    if isinstance(ranked, (str, bytes)) or not isinstance(ranked, Sequence):
        raise InvalidInputError(
            f"{name}: expected a sequence (list or tuple) of document ids, best first, got {type(ranked).__name__}."
        )
    seen: set[str] = set()
    for doc_id in ranked:
        if not isinstance(doc_id, str):
            raise InvalidInputError(
                f"{name}: document ids must be strings (qrels ids are strings), got {doc_id!r}; "
                "convert them with str()."
            )
        if doc_id in seen:
            raise InvalidInputError(
                f"{name}: document id {doc_id!r} appears more than once; a ranking lists each document once."
            )
        seen.add(doc_id)


def _check_qrels_for_query(judged: object, name: str = "qrels_for_query") -> None:
    if not isinstance(judged, Mapping):
        raise InvalidInputError(
            f"{name}: expected a mapping of document id -> judged score, got {type(judged).__name__}."
        )
    for doc_id, score in judged.items():
        if not isinstance(doc_id, str):
            raise InvalidInputError(f"{name}: document ids must be strings, got {doc_id!r}; convert them with str().")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise InvalidInputError(
                f"{name}[{doc_id!r}]: a judged score must be a finite number (usually an int), got {score!r}."
            )
