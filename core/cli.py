"""The ``lateint`` command line: ``index``, ``search``, ``check``, ``eval`` and ``demo``.

The model comes from ``--model`` or the ``LATEINT_MODEL`` environment variable (a local checkpoint
folder or a Hugging Face Hub id; default ``answerdotai/answerai-colbert-small-v1``).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import click

from .encoder import DEFAULT_MODEL
from .errors import CorruptIndexError, InvalidInputError, LateInteractionError

F = TypeVar("F", bound=Callable[..., Any])

_model_option = click.option(
    "--model",
    envvar="LATEINT_MODEL",
    default=DEFAULT_MODEL,
    show_default=True,
    show_envvar=True,
    help="Checkpoint folder or Hugging Face Hub id.",
)
_device_option = click.option("--device", default=None, help="cuda, cpu, mps (default: best available).")
_batch_option = click.option("--batch-size", default=32, show_default=True, help="Documents per encoder batch.")


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Late-interaction (ColBERT) retrieval: build an index, search it, evaluate it."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _friendly_errors(fn: F) -> F:
    """Turn the library's typed errors into a clean message and exit status 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LateInteractionError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper  # type: ignore[return-value]


@main.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@_model_option
@_device_option
@_batch_option
@click.option(
    "--long-documents",
    type=click.Choice(["truncate", "window"]),
    default=None,
    help="How to treat documents past document_length.",
)
@_friendly_errors
def index(data: Path, out: Path, model: str, device: str | None, batch_size: int, long_documents: str | None) -> None:
    """Encode DATA (a BEIR folder or a .jsonl of {"_id", "text", ...}) into a store saved at OUT.

    Keys other than _id/id, title and text become each document's metadata.
    """
    from .store import LateInteractionStore

    ids, texts, metadatas = _read_documents(data)
    store = LateInteractionStore(_encoder(model, device, long_documents=long_documents))
    start = time.perf_counter()
    store.add_texts(texts, metadatas, ids, batch_size=batch_size, show_progress_bar=True)
    store.save(out)
    click.echo(f"Indexed {len(store)} documents in {time.perf_counter() - start:.1f}s -> {out}")


@main.command()
@click.argument("store_path", type=click.Path(path_type=Path))
@click.argument("query")
@click.option("-k", default=10, show_default=True, help="Number of results.")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE", help="Exact metadata match (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
@click.option(
    "--model",
    envvar="LATEINT_MODEL",
    default=None,
    show_envvar=True,
    help="Checkpoint folder or Hub id to encode queries with (default: the one the store records); "
    "use it when the model folder has moved. It must be the same model.",
)
@click.option(
    "--allow-model-mismatch",
    is_flag=True,
    help="Search even if --model is not the model the store was built with (scores mix two vector spaces).",
)
@_device_option
@_friendly_errors
def search(
    store_path: Path,
    query: str,
    k: int,
    filters: tuple[str, ...],
    as_json: bool,
    model: str | None,
    allow_model_mismatch: bool,
    device: str | None,
) -> None:
    """Search the store at STORE_PATH for QUERY.

    The store's queries are encoded with the model it records, or --model / LATEINT_MODEL when given
    (e.g. the model folder has moved; its fingerprint must match).
    """
    from .store import LateInteractionStore

    store = LateInteractionStore.load(
        store_path, model=model or None, device=device, allow_model_mismatch=allow_model_mismatch
    )
    results = store.search(query, k=k, filter=_parse_filters(filters) or None)
    for rank, r in enumerate(results, 1):
        if as_json:
            click.echo(json.dumps({"rank": rank, "id": r.id, "score": r.score, "metadata": r.metadata, "text": r.text}))
        else:
            click.echo(f"{rank:>3}. {r.score:7.3f}  [{r.id}] {_shorten(r.text)}")


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
def check(path: Path) -> None:
    """Verify the saved index, store or persisted retriever at PATH: print OK, or every problem and exit 1.

    Checks every file's size and sha256 against the manifests, every array's header against its
    manifest, and the index's internal ranges (lengths, centroid ids, inverted lists). Needs no model
    and changes nothing.
    """
    problems, summary = check_folder(path)
    if problems:
        for problem in problems:
            click.echo(f"PROBLEM: {problem}")
        raise SystemExit(1)
    click.echo(f"OK: {path} ({summary})")


def check_folder(path: Path) -> tuple[list[str], str]:
    """Every problem with the saved folder at ``path`` (none when intact) and a one-line summary."""
    from . import _io

    if not path.is_dir():
        leftovers = _io._leftovers(path)
        hint = (
            f" ({len(leftovers)} leftover(s) of interrupted saves lie next to it; loading it restores the newest "
            "complete one)"
            if leftovers
            else ""
        )
        return [f"{path} is not a saved folder{hint}"], ""
    problems = _io.verify_folder(path, deep=True)
    if problems:
        return problems, ""
    try:
        return [], _check_contents(path)
    except LateInteractionError as exc:
        return [f"{type(exc).__name__}: {exc}"], ""


def _check_contents(folder: Path) -> str:
    """Load what ``folder`` holds (no model needed) so that every header and range check runs."""
    from . import _io
    from .fingerprint import ModelFingerprint
    from .index import load_index
    from .store import read_texts

    manifest = _io.read_manifest(folder)
    if manifest["kind"] == "llama-index-retriever":
        return f"LlamaIndex retriever; {_check_contents(folder / 'store')}"
    if manifest.get("fingerprint") is not None:
        try:
            ModelFingerprint.from_dict(manifest["fingerprint"])
        except ValueError as exc:
            raise CorruptIndexError(f"{folder / _io.MANIFEST}: field 'fingerprint' is malformed ({exc}).") from exc
    if manifest["kind"] == "store":
        index = load_index(folder / "index", device="cpu")
        read_texts(folder, index, manifest)
        _check_index(index, folder / "index")
        return f"store of {len(index)} documents in a {type(index).__name__}, model {manifest['model']}"
    index = load_index(folder, device="cpu")
    _check_index(index, folder)
    return f"{type(index).__name__} of {len(index)} documents"


def _check_index(index: Any, folder: Path) -> None:
    """The checks too costly for every load: a PLAID index's inverted lists rebuilt from its codes."""
    import torch

    from .plaid import PLAIDIndex

    if isinstance(index, PLAIDIndex) and index.codec is not None:
        # The saved inverted lists must be exactly the ones the tokens' centroid ids give.
        saved = index._ivf_lists()
        index._ivf = None
        rebuilt = index._ivf_lists()
        if not all(a.shape == b.shape and torch.equal(a.long(), b.long()) for a, b in zip(saved, rebuilt, strict=True)):
            raise CorruptIndexError(f"{folder}: the inverted lists do not match the centroid ids of the tokens.")


@main.command(name="eval")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="BEIR-layout folder.",
)
@click.option("--split", default="test", show_default=True, help="qrels split to evaluate.")
@_model_option
@_device_option
@_batch_option
@click.option("--metric", "metrics", multiple=True, default=("ndcg@10", "recall@100", "mrr@10"), show_default=True)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=None,
    help="Save the encoded corpus here and reuse it next time.",
)
@click.option(
    "--index",
    "index_kind",
    type=click.Choice(["exact", "plaid"]),
    default="exact",
    show_default=True,
    help="Exact MaxSim, or the compressed PLAID index built from the same vectors.",
)
@click.option("--nbits", type=click.Choice(["1", "2", "4"]), default="2", show_default=True, help="PLAID bits per dim.")
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Also write the metrics as JSON.")
@_friendly_errors
def evaluate_cmd(
    data: Path,
    split: str,
    model: str,
    device: str | None,
    batch_size: int,
    metrics: tuple[str, ...],
    cache: Path | None,
    index_kind: str,
    nbits: str,
    output: Path | None,
) -> None:
    """Retrieval quality on a BEIR dataset (nDCG, Recall, MRR against its qrels).

    The corpus is encoded once (reused from --cache when given) into an exact index; --index plaid
    then compresses those same vectors into a PLAID index and searches that.
    """
    from .evaluation import evaluate, load_beir
    from .store import LateInteractionStore

    dataset = load_beir(data, split=split)
    encoder = _encoder(model, device)
    start = time.perf_counter()
    if cache is not None and cache.exists():
        store = LateInteractionStore.load(cache, encoder=encoder)
        click.echo(f"Loaded {len(store)} encoded documents from {cache}")
    else:
        doc_ids, doc_texts = dataset.document_texts()
        store = LateInteractionStore(encoder)
        store.add_texts(doc_texts, ids=doc_ids, batch_size=batch_size, show_progress_bar=True)
        if cache is not None:
            store.save(cache)
    encode_seconds = time.perf_counter() - start
    index = store.index
    description = "exact MaxSim"
    if index_kind == "plaid":
        from .index import ExactIndex
        from .plaid import PLAIDConfig, PLAIDIndex

        if not isinstance(index, ExactIndex):
            raise InvalidInputError(f"--cache {cache} does not hold an exact index to compress.")
        ids, vectors = index.ids, index.embeddings()
        start = time.perf_counter()
        index = PLAIDIndex(config=PLAIDConfig(nbits=int(nbits)))
        index.add(ids, vectors)
        description = f"PLAID nbits={nbits} (built in {time.perf_counter() - start:.1f}s)"
    k = max(int(m.split("@")[1]) for m in metrics if "@" in m) if metrics else 100
    # A judged query without text cannot be encoded; it retrieves nothing and scores 0 on every metric.
    query_ids = [q for q, text in dataset.queries.items() if text.strip()]
    if len(query_ids) < len(dataset.queries):
        click.echo(f"Warning: {len(dataset.queries) - len(query_ids)} judged queries have no text; they score 0.")
    start = time.perf_counter()
    queries = [dataset.queries[q] for q in query_ids]
    hits = index.search(encoder.encode_queries(queries), k=k) if queries else []
    search_seconds = time.perf_counter() - start
    run = {q: [h.id for h in row] for q, row in zip(query_ids, hits, strict=True)}
    scores = evaluate(run, dataset.qrels, metrics=metrics)
    click.echo(
        f"{data.name} ({split}): {len(store)} documents, {len(dataset.queries)} queries, {description}, model {model}\n"
        f"encode corpus {encode_seconds:.0f}s, search {search_seconds:.1f}s"
    )
    click.echo(f"{'metric':<12}{'value':>8}")
    for name, value in scores.items():
        click.echo(f"{_metric_label(name):<12}{value:>8.4f}")
    if output is not None:
        payload = {
            "data": str(data),
            "split": split,
            "model": model,
            "n_documents": len(store),
            "metrics": scores,
        }
        output.write_text(json.dumps(payload, indent=1), encoding="utf-8")


@main.command()
@_model_option
@_device_option
@click.option("-k", default=3, show_default=True, help="Results per query.")
@click.option("--query", "queries", multiple=True, help="Your own query (repeatable); default: the sample queries.")
@_friendly_errors
def demo(model: str, device: str | None, k: int, queries: tuple[str, ...]) -> None:
    """Index a small built-in corpus and print ranked results for a few queries."""
    from .store import LateInteractionStore

    corpus = _read_jsonl_resource("sample_corpus.jsonl")
    if not queries:
        queries = tuple(row["text"] for row in _read_jsonl_resource("sample_queries.jsonl"))
    store = LateInteractionStore(_encoder(model, device))
    ids, texts, metadatas = _split_rows(corpus)
    store.add_texts(texts, metadatas, ids)
    click.echo(f"Indexed {len(store)} sample passages with {model}\n")
    for query, results in zip(queries, store.search_batch(list(queries), k=k), strict=True):
        click.echo(f"Q: {query}")
        for rank, r in enumerate(results, 1):
            click.echo(f"  {rank}. {r.score:6.2f}  [{r.id} {r.metadata.get('topic', '')}] {_shorten(r.text)}")
        click.echo("")


# ---------------------------------------------------------------------- helpers
def _encoder(model: str, device: str | None, **overrides: Any) -> Any:
    from .encoder import ColBERTEncoder

    return ColBERTEncoder.from_pretrained(model, device=device, **{k: v for k, v in overrides.items() if v is not None})


def _read_jsonl_resource(name: str) -> list[dict[str, Any]]:
    text = resources.files("lateint_plugins.core").joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _read_documents(data: Path) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    if data.is_dir():
        data = data / "corpus.jsonl"
    rows = []
    with open(data, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InvalidInputError(f"{data}:{number} is not valid JSON: {exc}") from exc
    return _split_rows(rows)


def _split_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    ids, texts, metadatas = [], [], []
    for row in rows:
        ids.append(str(row.get("_id", row.get("id"))))
        texts.append(f"{row.get('title') or ''} {row.get('text') or ''}".strip())
        metadatas.append({k: v for k, v in row.items() if k not in ("_id", "id", "title", "text")})
    return ids, texts, metadatas


def _parse_filters(filters: tuple[str, ...]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--filter expects KEY=VALUE, got {item!r}.")
        try:  # numbers and booleans match JSON metadata of the same type
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def _metric_label(name: str) -> str:
    base, _, k = name.partition("@")
    label = {"ndcg": "nDCG", "recall": "Recall", "mrr": "MRR"}.get(base.lower(), base)
    return f"{label}@{k}" if k else label


def _shorten(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


if __name__ == "__main__":
    main()
