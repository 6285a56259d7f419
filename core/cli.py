"""The ``lateint`` command line: ``index``, ``search``, ``check``, ``eval``, ``train`` and ``demo``.

The model comes from ``--model`` or the ``LATEINT_MODEL`` environment variable (a local checkpoint
folder or a Hugging Face Hub id; default ``answerdotai/answerai-colbert-small-v1``).

This module imports neither torch nor transformers at import time, so ``lateint --help`` and
``lateint --version`` answer at once; every command validates its cheap arguments (paths, ``-k``,
filters, metric names, query files) before it loads a model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from lateint_plugins import __version__

from .errors import CorruptIndexError, InvalidInputError, LateInteractionError, MissingDependencyError

# Kept equal to ``encoder.DEFAULT_MODEL`` (a test checks); importing the encoder here would import torch.
DEFAULT_MODEL = "answerdotai/answerai-colbert-small-v1"

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
_precision_option = click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16", "int8"]),
    envvar="LATEINT_PRECISION",
    show_envvar=True,
    default=None,
    help="What the encoder computes in (default auto: bf16 on CPUs with native BF16 and on CUDA, else fp32).",
)
_batch_option = click.option(
    "--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Documents per encoder batch."
)
_nbits_option = click.option(
    "--nbits",
    type=click.Choice(["1", "2", "4"]),
    default=None,
    help="PLAID residual bits per dimension (default 2; only with --index plaid).",
)


def _index_options(command: F) -> F:
    """``--index exact|plaid`` and ``--nbits``, shared by ``index`` and ``eval``."""
    command = _nbits_option(command)
    return click.option(
        "--index",
        "index_kind",
        type=click.Choice(["exact", "plaid"]),
        default="exact",
        show_default=True,
        help="Exact MaxSim (fp16 vectors), or the compressed PLAID index (eval: built from the same vectors).",
    )(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="lateint", message="%(prog)s %(version)s")
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
@_precision_option
@_batch_option
@click.option(
    "--long-documents",
    type=click.Choice(["truncate", "window"]),
    default=None,
    help="How to treat documents past document_length.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Encode in N worker processes (CPU: the threads split among them; CUDA: one per GPU in turn). "
    "Pays on many cores or several GPUs, not on a small CPU.",
)
@_index_options
@_friendly_errors
def index(
    data: Path,
    out: Path,
    model: str,
    device: str | None,
    precision: str | None,
    batch_size: int,
    long_documents: str | None,
    processes: int | None,
    index_kind: str,
    nbits: str | None,
) -> None:
    """Encode DATA (a BEIR folder or a .jsonl of {"_id", "title", "text", ...} rows) into a store saved at OUT.

    Keys other than _id/id, title and text become each document's metadata. When no row has an id,
    each document's id is its line number in the file ("1", "2", ...); rows must either all have
    one or none.
    """
    _check_index_options(index_kind, nbits)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"OUT: {out} is a file; pass a folder path for the saved store.")
    documents = _read_documents(data)
    from .store import LateInteractionStore

    encoder = _encoder(model, device, precision=precision, long_documents=long_documents)
    store = LateInteractionStore(encoder, _new_index(index_kind, nbits, device))
    start = time.perf_counter()
    # The store encodes through encoder.pool when it is set; the pool's workers stop when the block ends.
    encoder.pool = encoder.start_multi_process_pool(processes=processes) if processes and processes > 1 else None
    with encoder.pool or contextlib.nullcontext():
        try:
            store.add_texts(
                documents.texts, documents.metadatas, documents.ids, batch_size=batch_size, show_progress_bar=True
            )
        except InvalidInputError as exc:
            raise type(exc)(documents.locate(str(exc))) from exc
    store.save(out)
    click.echo(f"Indexed {len(store)} documents ({index_kind}) in {time.perf_counter() - start:.1f}s -> {out}")


@main.command()
@click.argument("store_path", type=click.Path(path_type=Path))
@click.argument("query", required=False)
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True, help="Number of results.")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE", help="Exact metadata match (repeatable).")
@click.option(
    "--queries",
    "queries_file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="Many queries in one process: a file ('-' for stdin) of one query per line, or JSONL rows "
    '{"_id", "text"}; prints one JSON line per query.',
)
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
@_precision_option
@_friendly_errors
def search(
    store_path: Path,
    query: str | None,
    k: int,
    filters: tuple[str, ...],
    queries_file: Any,
    as_json: bool,
    model: str | None,
    allow_model_mismatch: bool,
    device: str | None,
    precision: str | None,
) -> None:
    """Search the store at STORE_PATH for QUERY, or for every query of --queries FILE.

    The store's queries are encoded with the model it records, or --model / LATEINT_MODEL when given
    (e.g. the model folder has moved; its fingerprint must match). A search that matches nothing
    prints "0 results" (with --json, on stderr); with --queries each query's line has "results": [].
    """
    if (query is None) == (queries_file is None):
        raise click.UsageError("give either QUERY or --queries FILE ('-' reads standard input), not both.")
    parsed_filter = _parse_filters(filters) or None
    if query is not None:
        if not query.strip():
            raise InvalidInputError("QUERY is empty; pass the text to search for.")
        batch = [("1", query)]
    else:
        batch = _read_queries(queries_file)
    from .store import LateInteractionStore

    store = LateInteractionStore.load(
        store_path, model=model or None, device=device, precision=precision, allow_model_mismatch=allow_model_mismatch
    )
    if queries_file is not None:
        for start in range(0, len(batch), 64):  # stream results while later queries are encoded
            chunk = batch[start : start + 64]
            rows = store.search_batch([text for _, text in chunk], k=k, filter=parsed_filter)
            for (query_id, text), results in zip(chunk, rows, strict=True):
                hits = [_result_dict(rank, r) for rank, r in enumerate(results, 1)]
                click.echo(json.dumps({"query_id": query_id, "query": text, "n_results": len(hits), "results": hits}))
        return
    results = store.search(batch[0][1], k=k, filter=parsed_filter)
    for rank, r in enumerate(results, 1):
        if as_json:
            click.echo(json.dumps(_result_dict(rank, r)))
        else:
            click.echo(f"{rank:>3}. {r.score:7.3f}  [{r.id}] {_shorten(r.text)}")
    if not results:
        hint = " (no document matches --filter)" if parsed_filter else " (the store is empty)"
        click.echo(f"0 results{hint}", err=as_json)


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
@_precision_option
@_batch_option
@click.option("--metric", "metrics", multiple=True, default=("ndcg@10", "recall@100", "mrr@10"), show_default=True)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Save the encoded corpus here and reuse it next time (keyed by the corpus and the model: "
    "another dataset or model is refused).",
)
@click.option("--rebuild-cache", is_flag=True, help="Re-encode into --cache even if it holds another corpus or model.")
@_index_options
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write metrics, settings, timings and versions as JSON (atomically).",
)
@_friendly_errors
def evaluate_cmd(
    data: Path,
    split: str,
    model: str,
    device: str | None,
    precision: str | None,
    batch_size: int,
    metrics: tuple[str, ...],
    cache: Path | None,
    rebuild_cache: bool,
    index_kind: str,
    nbits: str | None,
    output: Path | None,
) -> None:
    """Retrieval quality on a BEIR dataset (nDCG, Recall, MRR against its qrels).

    The corpus is encoded once (reused from --cache when given) into an exact index; --index plaid
    then compresses those same vectors into a PLAID index and searches that.
    """
    from .evaluation import _parse_metric, evaluate, load_beir

    k = max(_parse_metric(m)[1] for m in metrics) if metrics else 100
    _check_index_options(index_kind, nbits)
    if output is not None and not output.resolve().parent.is_dir():
        raise InvalidInputError(f"--output: the folder {output.parent} does not exist; create it first.")
    dataset = load_beir(data, split=split)
    corpus_key = _file_sha256(data / "corpus.jsonl")
    reuse = cache is not None and not rebuild_cache and _cache_is_usable(cache, data, corpus_key)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    encoder = _encoder(model, device, precision=precision)
    timings["load_model_s"] = time.perf_counter() - start

    from .errors import ModelMismatchError
    from .store import LateInteractionStore

    start = time.perf_counter()
    if reuse and cache is not None:
        try:
            store = LateInteractionStore.load(cache / "store", encoder=encoder)
        except ModelMismatchError as exc:
            raise ModelMismatchError(
                f"--cache {cache} was encoded with another model ({exc}); pass another --cache folder or "
                "--rebuild-cache."
            ) from exc
        click.echo(f"Loaded {len(store)} encoded documents from {cache}")
    else:
        doc_ids, doc_texts = dataset.document_texts()
        store = LateInteractionStore(encoder)
        store.add_texts(doc_texts, ids=doc_ids, batch_size=batch_size, show_progress_bar=True)
        if cache is not None:
            store.save(cache / "store")
            _write_json_atomic(
                cache / _CACHE_KEY,
                {"format": 1, "data": str(data.resolve()), "corpus_sha256": corpus_key, "model": model},
            )
    timings["encode_corpus_s"] = time.perf_counter() - start
    index = store.index
    description = "exact MaxSim"
    if index_kind == "plaid":
        from .index import ExactIndex
        from .plaid import PLAIDConfig, PLAIDIndex

        if not isinstance(index, ExactIndex):
            raise InvalidInputError(f"--cache {cache} does not hold an exact index to compress.")
        ids, vectors = index.ids, index.embeddings()
        start = time.perf_counter()
        index = PLAIDIndex(config=PLAIDConfig(nbits=int(nbits or 2)))
        index.add(ids, vectors)
        timings["build_index_s"] = time.perf_counter() - start
        description = f"PLAID nbits={nbits or 2} (built in {timings['build_index_s']:.1f}s)"
    # A judged query without text cannot be encoded; it retrieves nothing and scores 0 on every metric.
    query_ids = [q for q, text in dataset.queries.items() if text.strip()]
    if len(query_ids) < len(dataset.queries):
        click.echo(f"Warning: {len(dataset.queries) - len(query_ids)} judged queries have no text; they score 0.")
    start = time.perf_counter()
    queries = [dataset.queries[q] for q in query_ids]
    hits = index.search(encoder.encode_queries(queries, show_progress_bar=True), k=k) if queries else []
    timings["search_s"] = time.perf_counter() - start
    run = {q: [h.id for h in row] for q, row in zip(query_ids, hits, strict=True)}
    scores = evaluate(run, dataset.qrels, metrics=metrics)
    click.echo(
        f"{data.name} ({split}): {len(store)} documents, {len(dataset.queries)} queries, {description}, model {model}\n"
        f"encode corpus {timings['encode_corpus_s']:.0f}s, search {timings['search_s']:.1f}s"
    )
    click.echo(f"{'metric':<12}{'value':>8}")
    for name, value in scores.items():
        click.echo(f"{_metric_label(name):<12}{value:>8.4f}")
    if output is not None:
        payload = {
            "data": str(data),
            "split": split,
            "model": model,
            "precision": encoder.precision,
            "index": index_kind,
            "nbits": int(nbits or 2) if index_kind == "plaid" else None,
            "k": k,
            "n_documents": len(store),
            "n_queries": len(dataset.queries),
            "cache": None if cache is None else {"path": str(cache), "reused": reuse},
            "metrics": scores,
            "timings": {name: round(value, 3) for name, value in timings.items()},
            "versions": _versions(),
        }
        _write_json_atomic(output, payload)


@main.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@_model_option
@_device_option
@click.option("--split", default="train", show_default=True, help="BEIR DATA: the qrels split to train on.")
@click.option(
    "--negatives",
    type=click.Choice(["bm25", "index", "none"]),
    default="bm25",
    show_default=True,
    help="BEIR DATA: mine hard negatives with BM25, the model's own exact index, or none (in-batch only).",
)
@click.option(
    "--mining-depth", type=click.IntRange(min=0), default=16, show_default=True, help="Hard negatives kept per query."
)
@click.option(
    "--negatives-per-query",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Hard negatives drawn from that pool per example and step (contrastive).",
)
@click.option(
    "--loss",
    type=click.Choice(["auto", "contrastive", "distillation"]),
    default="auto",
    show_default=True,
    help="auto: distillation when DATA has teacher scores, else contrastive.",
)
@click.option(
    "--holdout",
    type=float,
    default=0.0,
    show_default=True,
    help="BEIR DATA: fraction of training queries held back and scored (nDCG@10, exact index) after each epoch.",
)
@click.option("--eval-split", default=None, help="BEIR DATA: a qrels split scored after each epoch instead (e.g. dev).")
@click.option(
    "--eval-max-documents",
    type=click.IntRange(min=1),
    default=None,
    help="Score the evaluation queries over their judged documents plus a sample of others, this many in all.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--max-steps", type=click.IntRange(min=1), default=None, help="Optimizer steps in all (overrides --epochs)."
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Queries per forward pass."
)
@click.option("--gradient-accumulation-steps", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--learning-rate", type=float, default=3e-6, show_default=True)
@click.option(
    "--head-learning-rate",
    type=float,
    default=None,
    help="Peak learning rate of the projection heads (default: --learning-rate).",
)
@click.option("--warmup-steps", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--schedule",
    type=click.Choice(["linear", "constant"]),
    default="linear",
    show_default=True,
    help="After the warm-up: decay the learning rates linearly to 0, or hold them.",
)
@click.option(
    "--heads-only",
    is_flag=True,
    help="Train the projection heads only (the transformer frozen, no dropout): minutes on a CPU.",
)
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Contrastive logits = MaxSim / T.")
@click.option(
    "--matryoshka-dims",
    default=None,
    metavar="D1,D2,...",
    help="Extra projection heads trained jointly (e.g. 64,32); "
    "load one with ColBERTEncoder.from_pretrained(OUT/model, dim=64).",
)
@click.option(
    "--embedding-dim",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Width of the new projection when --model is a plain encoder (ColBERT checkpoints keep theirs).",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="bf16 autocast (weights stay fp32); auto: bf16 on CUDA and on CPUs with native BF16.",
)
@click.option(
    "--gradient-checkpointing", is_flag=True, help="Recompute activations in the backward pass (less memory)."
)
@click.option(
    "--cache-chunk-size",
    type=click.IntRange(min=1),
    default=None,
    help="Cached contrastive loss (GradCache): embed in chunks of N texts, so large batches fit in small memory.",
)
@click.option("--seed", type=click.IntRange(min=0), default=42, show_default=True)
@click.option(
    "--save-every", type=click.IntRange(min=1), default=None, help="Write a resumable checkpoint every N steps."
)
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in OUT/checkpoints.")
@_friendly_errors
def train(
    data: Path,
    out: Path,
    model: str,
    device: str | None,
    split: str,
    negatives: str,
    mining_depth: int,
    negatives_per_query: int,
    loss: str,
    holdout: float,
    eval_split: str | None,
    eval_max_documents: int | None,
    epochs: int,
    max_steps: int | None,
    batch_size: int,
    gradient_accumulation_steps: int,
    learning_rate: float,
    head_learning_rate: float | None,
    warmup_steps: int,
    schedule: str,
    heads_only: bool,
    temperature: float,
    matryoshka_dims: str | None,
    embedding_dim: int,
    precision: str,
    gradient_checkpointing: bool,
    cache_chunk_size: int | None,
    seed: int,
    save_every: int | None,
    resume: bool,
) -> None:
    """Fine-tune --model on DATA and save a PyLate-layout ColBERT to OUT/model.

    DATA is a BEIR folder (trained on qrels/<split>.tsv with mined hard negatives), a triplets JSONL
    ({"query", "positive", "negative" | "negatives"}) or a distillation JSONL ({"query", "documents",
    "scores"}). Checkpoints go to OUT/checkpoints (--save-every); --resume continues the newest one.
    """
    dims = _parse_dims(matryoshka_dims)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"OUT: {out} is a file; pass a folder for the model and checkpoints.")
    if not 0 <= holdout < 1:
        raise InvalidInputError(f"--holdout must be a fraction in [0, 1), got {holdout}.")
    beir = data.is_dir()
    if not beir and (holdout or eval_split):
        raise InvalidInputError("--holdout and --eval-split need a BEIR folder as DATA, not a JSONL file.")
    if holdout and eval_split:
        raise InvalidInputError("Pass --holdout or --eval-split, not both.")
    from .evaluation import load_beir
    from .training import (
        EvaluationSet,
        TrainableColBERT,
        Trainer,
        TrainingConfig,
        beir_examples,
        read_examples,
        split_queries,
    )

    # Everything cheap (files, splits, settings) is read and checked before the model loads.
    dataset = load_beir(data, split=split) if beir else None
    file_examples = read_examples(data) if dataset is None else []
    if loss == "auto":
        loss = "distillation" if file_examples and file_examples[0].scores is not None else "contrastive"
    config = TrainingConfig(
        loss=cast(Any, loss),
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        negatives_per_query=negatives_per_query,
        learning_rate=learning_rate,
        head_learning_rate=head_learning_rate,
        warmup_steps=warmup_steps,
        schedule=cast(Any, schedule),
        train_backbone=not heads_only,
        temperature=temperature,
        precision=cast(Any, precision),
        gradient_checkpointing=gradient_checkpointing,
        cache_chunk_size=cache_chunk_size,
        seed=seed,
        save_every=save_every,
    )
    eval_set = None
    train_ids: list[str] = []
    if dataset is not None:
        train_ids, held = split_queries(list(dataset.qrels), holdout, seed=seed)
        if held:
            eval_set = EvaluationSet.from_beir(dataset, query_ids=held, max_documents=eval_max_documents, seed=seed)
        elif eval_split:
            eval_set = EvaluationSet.from_beir(
                load_beir(data, split=eval_split), max_documents=eval_max_documents, seed=seed
            )
    click.echo(f"Loading model {model} ...", err=True)
    colbert = TrainableColBERT.from_pretrained(model, embedding_dim=embedding_dim, matryoshka_dims=dims, seed=seed)
    from .encoder import resolve_device

    colbert.to(resolve_device(device))  # before mining, which runs on the model's device
    examples = file_examples
    if dataset is not None:
        click.echo(f"Mining {mining_depth} hard negatives per query ({negatives}) ...", err=True)
        examples = beir_examples(
            dataset,
            negatives=cast(Any, negatives),
            n_negatives=mining_depth,
            encoder=colbert.as_encoder() if negatives == "index" else None,
            query_ids=train_ids,
        )
    trainer = Trainer(colbert, examples, config, output_dir=out, eval_set=eval_set, device=device)
    click.echo(
        f"Training on {len(examples)} examples: {trainer.total_steps} steps of "
        f"{batch_size}x{gradient_accumulation_steps}, "
        f"loss {loss}, heads {colbert.dims}, {'bf16' if trainer.bf16 else 'fp32'} on {trainer.device}",
        err=True,
    )
    result = trainer.train(resume_from="latest" if resume else None)
    tail = result.losses[-10:]
    click.echo(
        f"Trained {result.steps} steps in {result.wall_s:.0f}s; mean loss of the last {len(tail)} steps "
        f"{sum(tail) / max(len(tail), 1):.4f}"
    )
    for record in result.evaluations:
        click.echo(
            f"epoch {record['epoch']:.0f} step {record['step']:.0f}: nDCG@10 {record['ndcg@10']:.4f}, "
            f"Recall@100 {record['recall@100']:.4f}"
        )
    click.echo(f"Saved the model to {result.model_path}")


@main.command()
@_model_option
@_device_option
@_precision_option
@click.option("-k", type=click.IntRange(min=1), default=3, show_default=True, help="Results per query.")
@click.option("--query", "queries", multiple=True, help="Your own query (repeatable); default: the sample queries.")
@_friendly_errors
def demo(model: str, device: str | None, precision: str | None, k: int, queries: tuple[str, ...]) -> None:
    """Index a small built-in corpus and print ranked results for a few queries."""
    for n, query in enumerate(queries, 1):
        if not query.strip():
            raise InvalidInputError(f"--query number {n} is empty; pass the text to search for.")
    corpus = _read_jsonl_resource("sample_corpus.jsonl")
    if not queries:
        queries = tuple(row["text"] for row in _read_jsonl_resource("sample_queries.jsonl"))
    documents = _split_rows(list(enumerate(corpus, 1)), "sample_corpus.jsonl")
    from .store import LateInteractionStore

    store = LateInteractionStore(_encoder(model, device, precision=precision))
    store.add_texts(documents.texts, documents.metadatas, documents.ids, show_progress_bar=True)
    click.echo(f"Indexed {len(store)} sample passages with {model}\n")
    for query, results in zip(queries, store.search_batch(list(queries), k=k), strict=True):
        click.echo(f"Q: {query}")
        for rank, r in enumerate(results, 1):
            click.echo(f"  {rank}. {r.score:6.2f}  [{r.id} {r.metadata.get('topic', '')}] {_shorten(r.text)}")
        if not results:
            click.echo("  0 results")
        click.echo("")


# ---------------------------------------------------------------------- helpers
_CACHE_KEY = "lateint-eval-cache.json"


def _encoder(model: str, device: str | None, **overrides: Any) -> Any:
    click.echo(f"Loading model {model} ...", err=True)
    from .encoder import ColBERTEncoder

    return ColBERTEncoder.from_pretrained(model, device=device, **{k: v for k, v in overrides.items() if v is not None})


def _parse_dims(text: str | None) -> tuple[int, ...]:
    """``--matryoshka-dims 64,32`` -> ``(64, 32)``."""
    if not text:
        return ()
    try:
        dims = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidInputError(
            f"--matryoshka-dims: expected comma-separated widths such as 64,32, got {text!r}."
        ) from None
    if not dims or any(d < 1 for d in dims):
        raise InvalidInputError(f"--matryoshka-dims: expected positive widths such as 64,32, got {text!r}.")
    return dims


def _check_index_options(index_kind: str, nbits: str | None) -> None:
    """``--nbits`` needs ``--index plaid``, and PLAID needs FAISS: both checked before any model loads."""
    if nbits is not None and index_kind != "plaid":
        raise InvalidInputError(f"--nbits {nbits} only applies to --index plaid; add --index plaid or drop --nbits.")
    if index_kind == "plaid":
        import importlib.util

        if importlib.util.find_spec("faiss") is None:
            raise MissingDependencyError(
                "--index plaid trains its centroids with FAISS. Install it with: pip install 'lateint-plugins[faiss]'"
            )


def _new_index(index_kind: str, nbits: str | None, device: str | None) -> Any:
    from .index import create_index

    if index_kind == "exact":
        return create_index("exact")
    from .plaid import PLAIDConfig

    options: dict[str, Any] = {"config": PLAIDConfig(nbits=int(nbits or 2))}
    if device is not None:
        options["device"] = device
    return create_index("plaid", **options)


def _cache_is_usable(cache: Path, data: Path, corpus_key: str) -> bool:
    """True when ``cache`` holds this corpus's vectors; False when empty or absent; raises on another corpus."""
    if not cache.exists() or not any(cache.iterdir()):
        return False
    key_file = cache / _CACHE_KEY
    try:
        key = json.loads(key_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(
            f"--cache {cache} is not a cache written by `lateint eval` ({key_file.name} is missing or unreadable); "
            "pass an empty or new folder, or --rebuild-cache to encode into this one."
        ) from exc
    if not isinstance(key, dict) or key.get("corpus_sha256") != corpus_key:
        recorded = key.get("data") if isinstance(key, dict) else None
        raise InvalidInputError(
            f"--cache {cache} holds the encoded corpus of {recorded}, not of {data} (corpus.jsonl differs); "
            "pass another --cache folder, or --rebuild-cache to re-encode into this one."
        )
    return True


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as JSON to ``path`` so that a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"lateint-plugins": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for package in ("torch", "transformers", "tokenizers", "numpy", "faiss-cpu"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


def _read_jsonl_resource(name: str) -> list[dict[str, Any]]:
    text = resources.files("lateint_plugins.core").joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class _Documents:
    """Documents read from a file, with the line each came from (for error messages)."""

    def __init__(self, where: str, lines: list[int], ids: list[str], texts: list[str], metadatas: list[Any]) -> None:
        self.where, self.lines, self.ids, self.texts, self.metadatas = where, lines, ids, texts, metadatas

    def locate(self, message: str) -> str:
        """Rewrite ``texts[i]`` / ``ids[i]`` / ``metadatas[i]`` in a library message as ``file:line (_id ...)``."""
        import re

        def cite(match: re.Match[str]) -> str:
            i = int(match.group(2))
            if 0 <= i < len(self.lines):
                return f"{self.where}:{self.lines[i]} (_id {self.ids[i]!r}, field {match.group(1)})"
            return match.group(0)

        return re.sub(r"\b(texts|ids|metadatas)\[(\d+)\]", cite, message)


def _read_documents(data: Path) -> _Documents:
    """Read and check the rows of a BEIR folder's corpus.jsonl or a .jsonl file (no model needed)."""
    if data.is_dir():
        file = data / "corpus.jsonl"
        if not file.is_file():
            raise InvalidInputError(
                f"DATA: the folder {data} has no corpus.jsonl. Pass a .jsonl file of rows like "
                '{"_id": "d1", "title": "...", "text": "..."}, or a folder in the BEIR layout '
                "(corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."
            )
    else:
        file = data
    rows: list[tuple[int, Any]] = []
    try:
        with open(file, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise InvalidInputError(
                        f"{file}:{number}: not valid JSON ({exc.msg}); each line must be one object like "
                        '{"_id": "d1", "text": "..."}.'
                    ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    documents = _split_rows(rows, str(file))
    from .store import check_documents

    try:  # the library's own checks (UTF-8, JSON metadata), cited by file line, before any model loads
        check_documents(documents.texts, documents.metadatas, documents.ids)
    except InvalidInputError as exc:
        raise type(exc)(documents.locate(str(exc))) from exc
    return documents


def _split_rows(rows: list[tuple[int, Any]], where: str) -> _Documents:
    """Rows (with their line numbers) as ids, texts ("title text") and metadata (the other keys)."""
    from .evaluation import document_text

    for number, row in rows:
        if not isinstance(row, dict):
            raise InvalidInputError(
                f'{where}:{number}: expected a JSON object like {{"_id": "d1", "text": "..."}}, '
                f"got {type(row).__name__}."
            )
    with_id = [number for number, row in rows if "_id" in row or "id" in row]
    if with_id and len(with_id) < len(rows):
        missing = next(number for number, row in rows if "_id" not in row and "id" not in row)
        raise InvalidInputError(
            f"{where}:{missing}: the row has no '_id' (or 'id') but line {with_id[0]} has one; give every row "
            "an id, or none (then each document's id is its line number)."
        )
    lines, ids, texts, metadatas = [], [], [], []
    seen: dict[str, int] = {}
    for number, row in rows:
        if with_id:
            raw = row.get("_id", row.get("id"))
            if isinstance(raw, bool) or not isinstance(raw, (str, int)) or (isinstance(raw, str) and not raw.strip()):
                raise InvalidInputError(
                    f"{where}:{number}: '_id' must be a non-empty string or an integer, got {raw!r}."
                )
            doc_id = str(raw)
        else:
            doc_id = str(number)
        if doc_id in seen:
            raise InvalidInputError(
                f"{where}:{number}: _id {doc_id!r} repeats line {seen[doc_id]}; ids must be unique."
            )
        seen[doc_id] = number
        if "text" not in row and "title" not in row:
            raise InvalidInputError(
                f"{where}:{number} (_id {doc_id!r}): the row has no 'text' (or 'title'); keys found: {sorted(row)}."
            )
        for key in ("title", "text"):
            if row.get(key) is not None and not isinstance(row[key], str):
                raise InvalidInputError(
                    f"{where}:{number} (_id {doc_id!r}): '{key}' must be a string, got {type(row[key]).__name__}."
                )
        lines.append(number)
        ids.append(doc_id)
        texts.append(document_text(row.get("title"), row.get("text")))
        metadatas.append({k: v for k, v in row.items() if k not in ("_id", "id", "title", "text")})
    return _Documents(where, lines, ids, texts, metadatas)


def _read_queries(stream: Any) -> list[tuple[str, str]]:
    """``(query_id, text)`` from one query per line, or JSONL rows ``{"_id", "text"}``; ids default to line numbers."""
    where = getattr(stream, "name", "<stdin>")
    if where == "-":
        where = "<stdin>"
    queries: list[tuple[str, str]] = []
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        text, query_id = line.rstrip("\r\n"), str(number)
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"--queries {where}:{number}: not valid JSON ({exc.msg}).") from exc
            if not isinstance(row.get("text"), str):
                raise InvalidInputError(f"--queries {where}:{number}: a JSON row needs a string 'text'.")
            text, query_id = row["text"], str(row.get("_id", row.get("id", number)))
        if not text.strip():
            raise InvalidInputError(f"--queries {where}:{number} (query {query_id!r}) is empty.")
        queries.append((query_id, text))
    if not queries:
        raise InvalidInputError(f"--queries {where} holds no queries.")
    return queries


def _result_dict(rank: int, r: Any) -> dict[str, Any]:
    return {"rank": rank, "id": r.id, "score": r.score, "metadata": r.metadata, "text": r.text}


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
