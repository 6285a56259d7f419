"""Regression tests for what a red-team pass over issue 12 found (one test per finding, each failed before its fix).

Bad arguments at public entry points that gave bare exceptions or were silently misread, hostile
saved folders (a FIFO in an old-format folder hung the load), and two processes saving to one path.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _saved import random_documents, reseal, snapshot
from lateint_plugins.core.errors import CorruptIndexError, InvalidInputError, LateInteractionError
from lateint_plugins.core.index import ExactIndex, Index, create_index, load_index
from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex, SearchConfig
from lateint_plugins.core.rerank import rerank
from lateint_plugins.core.scoring import maxsim
from lateint_plugins.core.store import LateInteractionStore

TESTS = Path(__file__).resolve().parent


@contextmanager
def no_hang(seconds: int = 20) -> Iterator[None]:
    """Turn a hang into a test failure (a blocking open of a FIFO never returns)."""

    def fail(*_: Any) -> None:
        raise AssertionError(f"hung for {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def exact() -> ExactIndex:
    ids, docs = random_documents(6)
    index = ExactIndex(device="cpu")
    index.add(ids, docs, [{"g": i % 2} for i in range(6)])
    return index


@pytest.fixture(scope="module")
def plaid() -> PLAIDIndex:
    ids, docs = random_documents(30)
    index = PLAIDIndex(config=PLAIDConfig(nbits=2, n_centroids=8, keep_fp16=True), device="cpu")
    index.add(ids, docs, [{"g": i % 3} for i in range(30)])
    return index


# ---------------------------------------------------------------------------------------- paths
@pytest.mark.parametrize("path", [None, b"/tmp/x", 3, "", "a\x00b", ["a"]])
def test_save_and_load_with_a_path_that_is_not_a_path(exact: ExactIndex, tiny_encoder: Any, path: Any) -> None:
    store = LateInteractionStore(tiny_encoder, ExactIndex(device="cpu"))
    for call in (
        lambda: exact.save(path),
        lambda: ExactIndex.load(path),
        lambda: load_index(path),
        lambda: store.save(path),
        lambda: LateInteractionStore.load(path, encoder=tiny_encoder),
    ):
        with pytest.raises(InvalidInputError, match="path"):
            call()


def test_save_into_a_path_whose_parent_is_a_file(exact: ExactIndex, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="file stands where"):
        exact.save(tmp_path / "file" / "index")
    assert (tmp_path / "file").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_llama_index_persist_with_bad_paths(tiny_encoder: Any, tmp_path: Path) -> None:
    llama = pytest.importorskip("lateint_plugins.llama_index")
    store = LateInteractionStore(tiny_encoder, ExactIndex(device="cpu"))
    retriever = llama.LateInteractionRetriever(store, similarity_top_k=2)
    (tmp_path / "file").write_text("x")
    for call in (
        lambda: retriever.persist(None),
        lambda: llama.LateInteractionRetriever.from_persist_dir(None),
        lambda: retriever.persist(tmp_path / "file" / "sub"),
    ):
        with pytest.raises(InvalidInputError):
            call()


def test_two_processes_saving_to_one_path_both_complete_and_the_last_wins(tmp_path: Path) -> None:
    target = tmp_path / "index"
    script = (
        "import sys; sys.path.insert(0, sys.argv[3])\n"
        "from _saved import random_documents\n"
        "from lateint_plugins.core.index import ExactIndex\n"
        "seed = int(sys.argv[1])\n"
        "ids, docs = random_documents(4 + seed, seed=seed, prefix=f's{seed}-')\n"
        "index = ExactIndex(device='cpu'); index.add(ids, docs)\n"
        "for _ in range(25):\n"
        "    index.save(sys.argv[2])\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(seed), str(target), str(TESTS)], stderr=subprocess.PIPE)
        for seed in (1, 2)
    ]
    errors = [w.communicate(timeout=240)[1].decode() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    expected = []
    for seed in (1, 2):
        ids, docs = random_documents(4 + seed, seed=seed, prefix=f"s{seed}-")
        index = ExactIndex(device="cpu")
        index.add(ids, docs)
        expected.append(snapshot(index))
    assert snapshot(ExactIndex.load(target, device="cpu")) in expected
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no leftovers


# ---------------------------------------------------------------------------------------- hostile folders
def _old_format(folder: Path) -> None:
    """What a folder saved before manifests listed their files looks like."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("files"), manifest.pop("checksum")
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["tokens.npy", "lengths.npy", "documents.jsonl"])
@pytest.mark.parametrize("replacement", ["fifo", "folder"])
def test_old_format_folder_with_a_fifo_or_folder_in_place_of_a_file(
    exact: ExactIndex, tmp_path: Path, name: str, replacement: str
) -> None:
    folder = tmp_path / "index"
    exact.save(folder)
    _old_format(folder)
    assert snapshot(ExactIndex.load(folder, device="cpu")) == snapshot(exact)  # old folders still load
    (folder / name).unlink()
    os.mkfifo(folder / name) if replacement == "fifo" else (folder / name).mkdir()
    with no_hang(), pytest.raises(CorruptIndexError, match="regular file"):
        ExactIndex.load(folder, device="cpu")


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ('{"id": "\\ud800", "metadata": {}}', "lone surrogate"),
        ('{"id": "d0", "metadata": {"a": NaN}}', "NaN"),
        ('{"id": "d0", "metadata": {"\\udfff": 1}}', "lone surrogate"),
    ],
)
def test_resealed_rows_that_input_checks_would_refuse_are_corrupt(
    exact: ExactIndex, tmp_path: Path, row: str, match: str
) -> None:
    """A loaded lone surrogate made every later save fail; NaN metadata could never match a filter."""
    folder = tmp_path / "index"
    exact.save(folder)
    lines = (folder / "documents.jsonl").read_text().splitlines()
    lines[0] = row
    (folder / "documents.jsonl").write_text("\n".join(lines) + "\n")
    reseal(folder)
    with pytest.raises(CorruptIndexError, match=match):
        ExactIndex.load(folder, device="cpu")


def test_self_consistent_plaid_damage_never_crashes_a_search(plaid: PLAIDIndex, tmp_path: Path) -> None:
    """Arrays shuffled or overwritten with in-range values, resealed: typed errors or results, nothing else."""
    base = tmp_path / "base"
    plaid.save(base)
    _, docs = random_documents(30)
    names = sorted(p.stem for p in base.glob("*.npy"))
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(3 * len(names)):
        folder = tmp_path / f"t{trial}"
        shutil.copytree(base, folder)
        array = np.load(base / f"{names[trial % len(names)]}.npy")
        flat = array.reshape(-1)
        if flat.size:
            op = trial // len(names)
            if op == 0:
                rng.shuffle(flat)
            elif op == 1:
                flat[rng.integers(0, flat.size, flat.size // 4 + 1)] = flat.max()
            else:
                flat[rng.integers(0, flat.size, flat.size // 4 + 1)] = flat.min()
        np.save(folder / f"{names[trial % len(names)]}.npy", array)
        reseal(folder)
        try:
            index = load_index(folder, device="cpu")
            for k in (1, 7, 100):
                index.search([docs[trial % 30], docs[1]], k=k, filter={"g": 1} if k == 7 else None)
            index.search_config = SearchConfig(n_ivf_probe=1, n_centroid_interaction=1, n_full_scores=1, rescore=3)
            index.search([docs[2]], k=3)
            outcomes["loaded"] += 1
        except LateInteractionError:
            outcomes["refused"] += 1
    assert outcomes["loaded"] and outcomes["refused"]  # both paths ran


# ---------------------------------------------------------------------------------------- constructors
@pytest.mark.parametrize(
    "call",
    [
        lambda: ExactIndex(dim=True),
        lambda: ExactIndex(device="nope"),
        lambda: ExactIndex(device=["cpu"]),
        lambda: PLAIDIndex(device="nope"),
        lambda: PLAIDIndex(config="x"),  # type: ignore[arg-type]
        lambda: PLAIDIndex(search_config={"n_ivf_probe": 1}),  # type: ignore[arg-type]
        lambda: PLAIDIndex(codec="x"),  # type: ignore[arg-type]
        lambda: PLAIDConfig(nbits=True),
        lambda: PLAIDConfig(n_centroids=1.5),  # type: ignore[arg-type]
        lambda: PLAIDConfig(kmeans_niters=None),  # type: ignore[arg-type]
        lambda: PLAIDConfig(seed=-1),
        lambda: SearchConfig(n_ivf_probe=None),  # type: ignore[arg-type]
        lambda: SearchConfig(rescore=True),
        lambda: SearchConfig(centroid_score_threshold=math.nan),
        lambda: create_index("exact", device="nope"),
        lambda: maxsim([torch.ones(2, 4)], [torch.ones(3, 4)], device=object()),
    ],
)
def test_bad_index_settings_are_typed(call: Any) -> None:
    with pytest.raises(InvalidInputError):
        call()


def test_plaid_config_true_is_not_one_bit() -> None:
    """``nbits=True`` was accepted as 1 (bool is an int)."""
    with pytest.raises(InvalidInputError, match="nbits"):
        PLAIDConfig(nbits=True)


@pytest.mark.parametrize("encoder", [None, "model", object()])
def test_a_store_or_rerank_without_an_encoder_is_refused_at_once(encoder: Any) -> None:
    """``LateInteractionStore(None)`` was accepted and failed at the first add with AttributeError."""
    with pytest.raises(InvalidInputError, match="encoder"):
        LateInteractionStore(encoder)
    with pytest.raises(InvalidInputError, match="encoder"):
        rerank("query", ["a document"], encoder=encoder)


def test_store_add_embeddings_refuses_one_bare_matrix(tiny_encoder: Any) -> None:
    store = LateInteractionStore(tiny_encoder, ExactIndex(device="cpu"))
    with pytest.raises(InvalidInputError, match="embeddings must be a list"):
        store.add_embeddings(["a", "b"], torch.ones(2, tiny_encoder.dim), ids=["a", "b"])
    assert len(store) == 0
    assert isinstance(store.index, Index)


# ---------------------------------------------------------------------------------------- adapters
def test_langchain_constructors_give_typed_errors(tiny_encoder: Any) -> None:
    """k=0, k=True, store=None and top_n=0 raised pydantic's ValidationError (or were accepted)."""
    langchain = pytest.importorskip("lateint_plugins.langchain")
    store = LateInteractionStore(tiny_encoder, ExactIndex(device="cpu"))
    for call in (
        lambda: langchain.LateInteractionRetriever(store=store, k=0),
        lambda: langchain.LateInteractionRetriever(store=store, k=True),
        lambda: langchain.LateInteractionRetriever(store=None),
        lambda: langchain.LateInteractionRetriever(),
        lambda: langchain.LateInteractionReranker(encoder=tiny_encoder, top_n=0),
        lambda: langchain.LateInteractionReranker(encoder=tiny_encoder, batch_size=-1),
        lambda: langchain.LateInteractionRetriever(store=store, search_kwargs={"bogus": 1}),  # was a ValidationError
        lambda: langchain.LateInteractionRetriever(store=store, score_key=3),
        lambda: langchain.LateInteractionReranker(encoder=tiny_encoder, score_key=None),
    ):
        with pytest.raises(InvalidInputError):
            call()
    assert langchain.LateInteractionRetriever(store=store, k=np.int64(2)).k == 2


@pytest.fixture
def qdrant_store(tiny_encoder: Any) -> Any:
    qdrant = pytest.importorskip("lateint_plugins.qdrant")
    client = pytest.importorskip("qdrant_client").QdrantClient(":memory:")
    return qdrant.QdrantLateInteractionStore(client, "docs", tiny_encoder, device="cpu")


def test_qdrant_constructor_arguments_are_checked(qdrant_store: Any, tiny_encoder: Any) -> None:
    qdrant = pytest.importorskip("lateint_plugins.qdrant")
    client = qdrant_store.client
    for call in (
        lambda: qdrant.QdrantLateInteractionStore(client, "a/b", tiny_encoder),  # ValueError from qdrant-client
        lambda: qdrant.QdrantLateInteractionStore(client, "x" * 256, tiny_encoder),
        lambda: qdrant.QdrantLateInteractionStore(client, "\ud800", tiny_encoder),
        lambda: qdrant.QdrantLateInteractionStore(client, "ok", tiny_encoder, config="x"),
        lambda: qdrant.QdrantLateInteractionStore(None, "ok", tiny_encoder),
        lambda: qdrant.QdrantLateInteractionStore(client, "ok", None),
        lambda: qdrant.QdrantLateInteractionStore(client, "ok", tiny_encoder, device="nope"),
        lambda: qdrant.QdrantLateInteractionStore(client, "ok", tiny_encoder, candidate_depth=True),
        lambda: qdrant.CollectionConfig(hnsw_m=None),
        lambda: qdrant.sync_to_qdrant(None, client, "ok"),
        lambda: qdrant.content_hash("\ud800", None),
        lambda: qdrant.content_hash("text", [1]),
        lambda: qdrant.bm25_vector(None),
        lambda: qdrant.bm25_vector([1.5]),
    ):
        with pytest.raises(InvalidInputError):
            call()
    assert client.get_collections().collections[0].name == "docs"  # nothing else was created


def test_qdrant_add_documents_keeps_empty_documents_and_checks_metadata(qdrant_store: Any) -> None:
    """An empty page_content was refused (empty documents are legal); a list as metadata gave a bare TypeError."""
    from types import SimpleNamespace

    assert qdrant_store.add_documents([SimpleNamespace(page_content="", metadata={"a": 1})], ids=["empty"]) == ["empty"]
    assert qdrant_store.get(["empty"])[0].text == ""
    with pytest.raises(InvalidInputError, match="metadatas"):
        qdrant_store.add_documents([SimpleNamespace(page_content="x", metadata=[1])], ids=["bad"])
    assert qdrant_store.ids() == ["empty"]


def test_qdrant_search_refuses_what_the_core_store_refuses(qdrant_store: Any, tiny_encoder: Any) -> None:
    """An empty query was searched; candidate_depth=0 and mode='' silently fell back to the defaults."""
    qdrant_store.add_texts(["cats and dogs"], ids=["a"])
    query = tiny_encoder.encode_queries(["cats"])
    for call in (
        lambda: qdrant_store.search("  "),
        lambda: qdrant_store.search_batch(["cats", ""]),
        lambda: qdrant_store.search_embeddings(query, candidate_depth=0),
        lambda: qdrant_store.search_embeddings(query, mode=""),
        lambda: qdrant_store.search_embeddings(query, k=2.0),
        lambda: qdrant_store.search_embeddings(query, query_texts="cats"),
    ):
        with pytest.raises(InvalidInputError):
            call()
    assert [r.id for r in qdrant_store.search("cats", k=np.int64(1))] == ["a"]


def test_encoder_lengths_beyond_the_models_positions_are_refused(tiny_pylate_path) -> None:
    """query_length=10**9 used to pad every query to a billion tokens (MemoryError); the model has 512 positions."""
    from lateint_plugins.core.encoder import ColBERTEncoder
    from lateint_plugins.core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"query_length=1000000000 exceeds the 512 positions"):
        ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", query_length=10**9)
    with pytest.raises(InvalidInputError, match="device"):
        ColBERTEncoder.from_pretrained(tiny_pylate_path, device="nope")
    assert ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", query_length=512).config.query_length == 512
