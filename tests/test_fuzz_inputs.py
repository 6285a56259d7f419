"""Property-based input fuzzing: hostile arguments at every public entry point (issue 12, Deliver 8).

Each test throws random hostile values (NaN/inf and integer/bool/complex/object matrices, lone
surrogates, bare strings, None, empty and unhashable items, huge or boolean ``k``, ...) at one entry
point and checks two things:

* the only exceptions that escape are :class:`LateInteractionError` subclasses (no bare
  ``TypeError`` from deep inside torch, a tokenizer or pydantic);
* a call that is rejected leaves the store or index exactly as it was: same ids, texts, metadata
  and vectors.

Runs are bounded and reproducible (``derandomize=True``, no example database), on the tiny random
BERT from ``conftest.py``; the whole file takes well under a minute on two cores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import LateInteractionError
from lateint_plugins.core.evaluation import evaluate, mrr_at_k, ndcg_at_k, recall_at_k
from lateint_plugins.core.index import ExactIndex, Index
from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex
from lateint_plugins.core.rerank import rerank
from lateint_plugins.core.scoring import maxsim
from lateint_plugins.core.store import LateInteractionStore

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
SMALL = settings(FUZZ, max_examples=30)  # entry points that encode with the model on every example

DIM = 16  # the tiny PyLate-layout encoder's output width
TEXTS = ["The cat sat on the mat.", "Qubits can be in superposition.", "", "Bread rises because of yeast."]
IDS = ["a", "b", "c", "d"]
META: list[dict[str, Any]] = [{"topic": "pets"}, {"topic": "physics"}, {}, {"topic": "food", "n": 1}]


# ---------------------------------------------------------------------------------------- strategies
class _Opaque:
    """Not JSON, not a tensor, not a str: what a careless caller might pass anywhere."""

    def __repr__(self) -> str:
        return "<opaque>"


SURROGATES = ["\ud800", "ok\udfff", "\udc80tail"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(["", " ", "\n\t", *SURROGATES, "ab", "\x00"]),
    st.binary(max_size=4),
    st.just(_Opaque()),
    st.just(np.int64(3)),
    st.just(np.float32("nan")),
)
texts_item = st.one_of(st.text(max_size=12), st.sampled_from(["", "   ", "cats", *SURROGATES]), scalars)
valid_ids = st.lists(st.sampled_from([*IDS, "new", "other"]), max_size=3)
sequences = st.one_of(
    scalars,
    st.lists(texts_item, max_size=4),
    st.lists(st.text(min_size=1, max_size=8), max_size=3),  # mostly valid: the success paths run too
    valid_ids,
    st.tuples(texts_item, texts_item),
    st.just([["unhashable"]]),
    st.just({"a": 1}),
    st.just({"a", "b"}),
    st.just(iter(["a", "b"])),
)
json_like: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=4), st.sampled_from(SURROGATES), st.integers()), inner, max_size=3),
    ),
    max_leaves=6,
)
metadata_item = st.one_of(st.none(), json_like, st.dictionaries(st.text(max_size=4), json_like, max_size=3))
metadatas = st.one_of(
    st.none(),
    scalars,
    st.lists(metadata_item, max_size=4),
    st.lists(st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), max_size=3),
    st.just({"topic": "pets"}),
)
ks = st.one_of(
    st.integers(-3, 10),
    st.integers(10, 2**62),
    st.booleans(),
    st.floats(allow_nan=True),
    st.none(),
    st.text(max_size=2),
    st.just(np.int64(2)),
)
filters = st.one_of(
    st.none(),
    st.dictionaries(st.one_of(st.text(max_size=5), st.integers(), st.sampled_from(SURROGATES)), json_like, max_size=2),
    scalars,
    st.just({"topic": "pets"}),
    st.just([("topic", "pets")]),
)

MATRIX_KINDS = [
    "good",
    "good64",
    "good16",
    "numpy",
    "nan",
    "inf",
    "-inf",
    "int",
    "bool",
    "complex",
    "object",
    "int-numpy",
    "list",
    "none",
    "str",
    "1d",
    "3d",
    "0d",
    "empty",
    "wide",
    "narrow",
    "zero-width",
    "sparse",
]


def _matrix(kind: str, rows: int) -> Any:
    rows = max(rows, 1)
    good = torch.nn.functional.normalize(torch.randn(rows, DIM, generator=torch.Generator().manual_seed(rows)), dim=-1)
    if kind in ("nan", "inf", "-inf"):
        good[rows // 2, 1] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[kind]
        return good
    object_array = np.empty((rows, DIM), dtype=object)
    object_array[:] = 0.25
    return {
        "good": good,
        "good64": good.double(),
        "good16": good.half(),
        "numpy": good.numpy(),
        "int": good.long(),
        "bool": good > 0,
        "complex": good.to(torch.complex64),
        "object": object_array,
        "int-numpy": np.ones((rows, DIM), dtype=np.int16),
        "list": good.tolist(),
        "none": None,
        "str": "matrix",
        "1d": good[0],
        "3d": good[None],
        "0d": torch.tensor(1.0),
        "empty": good[:0],
        "wide": torch.ones(rows, DIM + 3),
        "narrow": torch.ones(rows, 2),
        "zero-width": torch.ones(rows, 0),
        "sparse": good.to_sparse(),
    }[kind]


matrices = st.builds(_matrix, st.sampled_from(MATRIX_KINDS), st.integers(0, 5)) | st.builds(
    _matrix, st.sampled_from(["good", "good16", "numpy"]), st.integers(1, 5)
)
matrix_lists = st.one_of(
    st.lists(matrices, max_size=4),
    matrices,
    scalars,
    st.just(torch.ones(2, 3, DIM)),
    st.just(np.ones((2, 3, DIM), dtype=np.float32)),
)


# ---------------------------------------------------------------------------------------- harness
def _typed(call: Callable[[], Any]) -> bool:
    """Run ``call``: True if it returned, False if it raised a typed error; anything else fails the test."""
    try:
        call()
    except LateInteractionError:
        return False
    return True


def _index_state(index: Index) -> tuple[Any, ...]:
    ids = index.ids
    vectors = index.embeddings() if isinstance(index, ExactIndex) else None
    return (
        ids,
        [index.metadata(i) for i in ids],
        index.dim,
        None if vectors is None else [v.clone() for v in vectors],
        index.n_tokens if isinstance(index, (ExactIndex, PLAIDIndex)) else None,
    )


def _store_state(store: LateInteractionStore) -> tuple[Any, ...]:
    return (_index_state(store.index), dict(store._texts))


def _assert_sane(index: Index, texts: dict[str, str] | None = None) -> None:
    """What an accepted write may leave behind: finite vectors, UTF-8 ids and texts, saveable metadata."""
    for doc_id in index.ids:
        assert isinstance(doc_id, str) and doc_id and doc_id.encode("utf-8")
        json.dumps(index.metadata(doc_id), allow_nan=False, ensure_ascii=False).encode("utf-8")
    if isinstance(index, ExactIndex):
        assert all(bool(torch.isfinite(v).all()) and v.shape[0] > 0 for v in index.embeddings())
    if texts is not None:
        assert set(texts) == set(index.ids) and all(t.encode("utf-8") is not None for t in texts.values())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return isinstance(b, type(a)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.fixture(scope="module")
def vectors(tiny_encoder: ColBERTEncoder) -> list[torch.Tensor]:
    return tiny_encoder.encode_documents(TEXTS)


@pytest.fixture(scope="module")
def make_store(tiny_encoder: ColBERTEncoder, vectors: list[torch.Tensor]) -> Callable[[], LateInteractionStore]:
    """A fresh exact store holding TEXTS, built without re-encoding (cheap enough for every example)."""

    def make() -> LateInteractionStore:
        store = LateInteractionStore(tiny_encoder, ExactIndex(device="cpu"))
        store.add_embeddings(TEXTS, vectors, META, IDS)
        return store

    return make


@pytest.fixture(scope="module")
def make_plaid(vectors: list[torch.Tensor]) -> Callable[[], PLAIDIndex]:
    """A fresh PLAID index holding TEXTS; trained once, then each copy reuses the codec (no k-means per example)."""
    trained = PLAIDIndex(config=PLAIDConfig(nbits=2, n_centroids=4), device="cpu")
    trained.add(IDS, vectors, META)

    def make() -> PLAIDIndex:
        index = PLAIDIndex(config=PLAIDConfig(nbits=2), codec=trained.codec, device="cpu")
        index.add(IDS, vectors, META)
        return index

    return make


# ---------------------------------------------------------------------------------------- core: numbers
@FUZZ
@given(
    queries=matrix_lists, documents=matrix_lists, lengths=st.one_of(st.none(), sequences, st.lists(st.integers(-2, 6)))
)
def test_maxsim(queries: Any, documents: Any, lengths: Any) -> None:
    if lengths is None:
        _typed(lambda: maxsim(queries, documents))
    else:
        _typed(lambda: maxsim(queries, documents, documents_lengths=lengths))


@FUZZ
@given(ids=sequences, embeddings=matrix_lists, metadata=metadatas, replace=st.booleans())
def test_index_add(
    make_store: Callable[[], LateInteractionStore], ids: Any, embeddings: Any, metadata: Any, replace: bool
) -> None:
    index = make_store().index
    before = _index_state(index)
    if not _typed(lambda: index.add(ids, embeddings, metadata, replace=replace)):
        assert _same(_index_state(index), before)
    _assert_sane(index)


@FUZZ
@given(
    ids=st.one_of(sequences, st.lists(st.sampled_from([*IDS, "zz", "new"]), max_size=3)),
    embeddings=matrix_lists,
    metadata=metadatas,
    replace=st.booleans(),
    queries=matrix_lists,
    k=ks,
    filter=filters,
    doc_id=scalars,
)
def test_plaid_index(
    make_plaid: Callable[[], PLAIDIndex],
    ids: Any,
    embeddings: Any,
    metadata: Any,
    replace: bool,
    queries: Any,
    k: Any,
    filter: Any,
    doc_id: Any,
) -> None:
    """A trained PLAID index: a rejected add, remove, search or lookup leaves it as it was."""
    index = make_plaid()
    before = _index_state(index)
    for call in (
        lambda: index.search(queries, k=k, filter=filter),
        lambda: index.metadata(doc_id),
        lambda: index.add(ids, embeddings, metadata, replace=replace),
        lambda: index.remove(ids),
    ):
        if _typed(call):
            before = _index_state(index)
        else:
            assert _same(_index_state(index), before)
    _assert_sane(index)
    hits = index.search([_matrix("good", 3)], k=100)[0]  # still searchable, whatever happened
    assert sorted(h.id for h in hits) == sorted(index.ids) and all(math.isfinite(h.score) for h in hits)


@FUZZ
@given(ids=sequences, queries=matrix_lists, k=ks, filter=filters, doc_id=scalars)
def test_exact_index_remove_search_metadata(
    make_store: Callable[[], LateInteractionStore], ids: Any, queries: Any, k: Any, filter: Any, doc_id: Any
) -> None:
    index = make_store().index
    before = _index_state(index)
    if not _typed(lambda: index.remove(ids)):
        assert _same(_index_state(index), before)
    before = _index_state(index)
    for call in (lambda: index.search(queries, k=k, filter=filter), lambda: index.metadata(doc_id)):
        _typed(call)
        assert _same(_index_state(index), before)
    _typed(lambda: doc_id in index)


# ---------------------------------------------------------------------------------------- core: store
@FUZZ
@given(
    texts=sequences,
    embeddings=matrix_lists,
    metadatas=metadatas,
    ids=st.one_of(st.none(), sequences, st.lists(st.sampled_from(["a", "new", "", "\ud800"]), max_size=3)),
    replace=st.booleans(),
)
def test_store_add_embeddings(
    make_store: Callable[[], LateInteractionStore], texts: Any, embeddings: Any, metadatas: Any, ids: Any, replace: bool
) -> None:
    store = make_store()
    before = _store_state(store)
    if not _typed(lambda: store.add_embeddings(texts, embeddings, metadatas, ids, replace=replace)):
        assert _same(_store_state(store), before)
    _assert_sane(store.index, store._texts)


@SMALL
@given(
    texts=sequences,
    metadatas=metadatas,
    ids=st.one_of(st.none(), sequences, st.lists(st.sampled_from(["a", "new", "", "\ud800"]), max_size=3)),
    replace=st.booleans(),
    chunk_size=st.one_of(st.integers(-1, 3), st.booleans(), st.none(), st.floats()),
    batch_size=st.one_of(st.integers(-1, 3), st.none(), st.floats()),
)
def test_store_add_texts(
    make_store: Callable[[], LateInteractionStore],
    texts: Any,
    metadatas: Any,
    ids: Any,
    replace: bool,
    chunk_size: Any,
    batch_size: Any,
) -> None:
    store = make_store()
    before = _store_state(store)
    call = lambda: store.add_texts(texts, metadatas, ids, replace=replace, chunk_size=chunk_size, batch_size=batch_size)  # noqa: E731
    if not _typed(call):
        assert _same(_store_state(store), before)
    _assert_sane(store.index, store._texts)


@SMALL
@given(query=texts_item, queries=sequences, k=ks, filter=filters, ids=sequences)
def test_store_search_get_delete(
    make_store: Callable[[], LateInteractionStore], query: Any, queries: Any, k: Any, filter: Any, ids: Any
) -> None:
    store = make_store()
    before = _store_state(store)
    for call in (
        lambda: store.search(query, k=k, filter=filter),
        lambda: store.search_batch(queries, k=k, filter=filter),
        lambda: store.get(ids),
        lambda: query in store,
    ):
        _typed(call)
        assert _same(_store_state(store), before)
    if not _typed(lambda: store.delete(ids)):
        assert _same(_store_state(store), before)
    _assert_sane(store.index, store._texts)


# ---------------------------------------------------------------------------------------- one bad argument
# The tests above make every argument hostile at once, so most calls fail on the first check. These
# keep every argument valid but one, which is either replaced whole or has a single item spoiled (one
# NaN matrix among good ones, one surrogate id, one non-JSON metadata value): each check must fire
# on its own, and an accepted call must leave only sane data behind.
HOSTILE_ITEMS = {
    "texts": st.sampled_from([*SURROGATES, None, 3, b"bytes", ["nested"], _Opaque()]),
    "ids": st.sampled_from(["", *SURROGATES, None, 7, b"id", ["x"], ("x",), _Opaque()]),
    "metadatas": st.sampled_from(
        [
            *({1: "a"}, {"k": math.nan}, {"k": math.inf}, {"k": _Opaque()}, {"\ud800": 1}, {"k": ["\udfff"]}),
            *({"k": {"n": {2: 3}}}, {"k": np.float32(1)}, "x", 3, ["k", "v"]),
        ]
    ),
    "embeddings": st.builds(
        _matrix,
        st.sampled_from([k for k in MATRIX_KINDS if k not in ("good", "good64", "good16", "numpy")]),
        st.integers(0, 5),
    ),
    "queries": st.sampled_from(["", "  ", *SURROGATES, None, 3, b"q", ["q"]]),
}
HOSTILE_WHOLE = st.one_of(scalars, st.just("ab"), st.just({"a": 1}), st.just({"a"}), st.lists(st.just("z"), max_size=5))


def _spoil(data: st.DataObject, name: str, valid: list[Any]) -> Any:
    """``valid`` with one item swapped for a hostile one, or a hostile value instead of the whole list."""
    if not valid or data.draw(st.integers(0, 2)) == 0:
        return data.draw(HOSTILE_WHOLE)
    out = list(valid)
    out[data.draw(st.integers(0, len(out) - 1))] = data.draw(HOSTILE_ITEMS[name])
    return out


def _documents(data: st.DataObject) -> dict[str, Any]:
    n = data.draw(st.integers(1, 3))
    return {
        "texts": data.draw(st.lists(st.text(max_size=10), min_size=n, max_size=n)),
        "ids": data.draw(
            st.lists(st.sampled_from(["a", "b", "new1", "new2", "new3"]), min_size=n, max_size=n, unique=True)
        ),
        "metadatas": data.draw(
            st.lists(
                st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
                min_size=n,
                max_size=n,
            )
        ),
        "embeddings": [
            _matrix(data.draw(st.sampled_from(["good", "good16", "numpy"])), data.draw(st.integers(1, 4)))
            for _ in range(n)
        ],
    }


@FUZZ
@given(data=st.data(), spoil=st.sampled_from([None, "texts", "ids", "metadatas", "embeddings"]), replace=st.booleans())
def test_store_add_embeddings_one_bad_argument(
    make_store: Callable[[], LateInteractionStore], data: st.DataObject, spoil: str | None, replace: bool
) -> None:
    store = make_store()
    args = _documents(data)
    if spoil is not None:
        args[spoil] = _spoil(data, spoil, args[spoil])
    before = _store_state(store)
    accepted = _typed(
        lambda: store.add_embeddings(args["texts"], args["embeddings"], args["metadatas"], args["ids"], replace=replace)
    )
    if not accepted:
        assert _same(_store_state(store), before)
    _assert_sane(store.index, store._texts)


@FUZZ
@given(
    data=st.data(),
    spoil=st.sampled_from([None, "ids", "metadatas", "embeddings"]),
    replace=st.booleans(),
    kind=st.sampled_from(["exact", "plaid"]),
)
def test_index_add_one_bad_argument(
    make_store: Callable[[], LateInteractionStore],
    make_plaid: Callable[[], PLAIDIndex],
    data: st.DataObject,
    spoil: str | None,
    replace: bool,
    kind: str,
) -> None:
    index = make_store().index if kind == "exact" else make_plaid()
    args = _documents(data)
    if spoil is not None:
        args[spoil] = _spoil(data, spoil, args[spoil])
    before = _index_state(index)
    if not _typed(lambda: index.add(args["ids"], args["embeddings"], args["metadatas"], replace=replace)):
        assert _same(_index_state(index), before)
    _assert_sane(index)


@SMALL
@given(data=st.data(), spoil=st.sampled_from([None, "texts", "ids", "metadatas"]), replace=st.booleans())
def test_store_add_texts_one_bad_argument(
    make_store: Callable[[], LateInteractionStore], data: st.DataObject, spoil: str | None, replace: bool
) -> None:
    store = make_store()
    args = _documents(data)
    if spoil is not None:
        args[spoil] = _spoil(data, spoil, args[spoil])
    before = _store_state(store)
    if not _typed(lambda: store.add_texts(args["texts"], args["metadatas"], args["ids"], replace=replace)):
        assert _same(_store_state(store), before)
    _assert_sane(store.index, store._texts)


@FUZZ
@given(
    data=st.data(), spoil=st.sampled_from(["embeddings", "queries"]), kind=st.sampled_from(["exact", "plaid", "maxsim"])
)
def test_search_and_maxsim_one_bad_query(
    make_store: Callable[[], LateInteractionStore],
    make_plaid: Callable[[], PLAIDIndex],
    tiny_encoder: ColBERTEncoder,
    data: st.DataObject,
    spoil: str,
    kind: str,
) -> None:
    good = [_matrix("good", data.draw(st.integers(1, 4))) for _ in range(data.draw(st.integers(1, 3)))]
    if spoil == "queries":  # text queries: the store, its batch search and rerank
        store = make_store()
        queries = _spoil(data, "queries", ["cats", "qubits"])
        for call in (
            lambda: store.search_batch(queries, k=2),
            lambda: store.search(queries[0] if isinstance(queries, list) else queries, k=2),
            lambda: rerank(queries[-1] if isinstance(queries, list) else queries, TEXTS, encoder=tiny_encoder),
        ):
            _typed(call)
        return
    bad = _spoil(data, "embeddings", good)
    if kind == "maxsim":
        for q, d in ((bad, good), (good, bad)):
            try:
                scores = maxsim(q, d)
            except LateInteractionError:
                continue
            assert bool(torch.isfinite(scores).all())  # accepted input never gives NaN scores
        return
    index = make_store().index if kind == "exact" else make_plaid()
    before = _index_state(index)
    try:
        hits = index.search(bad, k=3)
    except LateInteractionError:
        hits = []
    assert _same(_index_state(index), before)
    rows = hits if hits and isinstance(hits[0], list) else [hits]
    assert all(math.isfinite(h.score) for row in rows for h in row)


# ---------------------------------------------------------------------------------------- core: encoder, rerank
@SMALL
@given(
    texts=st.one_of(texts_item, sequences),
    batch_size=st.one_of(st.integers(-1, 4), st.none(), st.floats(), st.text(max_size=1)),
    long_documents=st.one_of(st.none(), st.sampled_from(["truncate", "window", "chop", ""]), scalars),
)
def test_encoder(tiny_encoder: ColBERTEncoder, texts: Any, batch_size: Any, long_documents: Any) -> None:
    _typed(lambda: tiny_encoder.encode_queries(texts, batch_size=batch_size))
    _typed(lambda: tiny_encoder.encode_documents(texts, batch_size=batch_size, long_documents=long_documents))


@SMALL
@given(
    query=texts_item,
    documents=sequences,
    k=st.one_of(st.none(), ks),
    document_embeddings=st.one_of(st.none(), matrix_lists),
)
def test_rerank(tiny_encoder: ColBERTEncoder, query: Any, documents: Any, k: Any, document_embeddings: Any) -> None:
    _typed(lambda: rerank(query, documents, k, encoder=tiny_encoder, document_embeddings=document_embeddings))


# ---------------------------------------------------------------------------------------- core: evaluation
@FUZZ
@given(
    run=st.one_of(scalars, st.dictionaries(texts_item.filter(lambda x: isinstance(x, str)), sequences, max_size=3)),
    qrels=st.one_of(
        scalars,
        st.dictionaries(
            st.sampled_from(["q1", "q2"]),
            st.one_of(scalars, st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), scalars, max_size=3)),
            max_size=2,
        ),
    ),
    metrics=st.one_of(
        scalars, st.lists(st.one_of(st.sampled_from(["ndcg@10", "mrr@0", "recall@x", "map@5"]), scalars), max_size=3)
    ),
    k=ks,
)
def test_evaluate(run: Any, qrels: Any, metrics: Any, k: Any) -> None:
    _typed(lambda: evaluate(run, qrels, metrics))
    for metric in (ndcg_at_k, recall_at_k, mrr_at_k):
        _typed(lambda metric=metric: metric(run, qrels, k))  # type: ignore[misc]


# ---------------------------------------------------------------------------------------- LangChain
def _langchain_documents() -> st.SearchStrategy[Any]:
    from langchain_core.documents import Document

    document = st.builds(
        Document,
        page_content=st.one_of(st.text(max_size=10), st.sampled_from(["", "  ", *SURROGATES])),
        metadata=st.dictionaries(st.one_of(st.text(max_size=3), st.sampled_from(SURROGATES)), json_like, max_size=2),
        id=st.one_of(st.none(), st.sampled_from(["a", "new", "", "\ud800"])),
    )
    return st.one_of(st.lists(st.one_of(document, scalars), max_size=3), document, scalars)


@pytest.fixture(scope="module")
def langchain_module() -> Any:
    return pytest.importorskip("lateint_plugins.langchain", reason="pip install 'lateint-plugins[langchain]'")


@SMALL
@given(data=st.data())
def test_langchain_entry_points(
    make_store: Callable[[], LateInteractionStore], langchain_module: Any, data: st.DataObject
) -> None:
    store = make_store()
    retriever = langchain_module.LateInteractionRetriever(store=store, k=2)
    vectorstore = langchain_module.LateInteractionVectorStore(store)
    reranker = langchain_module.LateInteractionReranker(encoder=store.encoder, top_n=2)
    query, k, filter = data.draw(texts_item), data.draw(ks), data.draw(filters)
    documents, ids = data.draw(_langchain_documents()), data.draw(st.one_of(st.none(), sequences))
    texts, metas = data.draw(sequences), data.draw(metadatas)
    before = _store_state(store)
    for call in (
        lambda: retriever.invoke(query),
        lambda: retriever.invoke("cats", k=k, filter=filter),
        lambda: vectorstore.similarity_search(query, k=k, filter=filter),
        lambda: vectorstore.similarity_search_with_score(query, k=2),
        lambda: vectorstore.get_by_ids(ids),
        lambda: reranker.compress_documents(documents, query),
    ):
        _typed(call)
        assert _same(_store_state(store), before)
    for write in (
        lambda: retriever.add_documents(documents, ids),
        lambda: vectorstore.add_texts(texts, metas, ids=ids),
        lambda: retriever.delete(ids),
        lambda: vectorstore.delete(ids),
    ):
        if _typed(write):
            before = _store_state(store)
        else:
            assert _same(_store_state(store), before)
    _assert_sane(store.index, store._texts)


# ---------------------------------------------------------------------------------------- LlamaIndex
def _llama_nodes() -> st.SearchStrategy[Any]:
    from llama_index.core.schema import NodeWithScore, TextNode

    node = st.builds(
        TextNode,
        id_=st.sampled_from(["a", "new", "x", "\ud800"]),
        text=st.one_of(st.text(max_size=10), st.sampled_from(["", "  ", *SURROGATES])),
        metadata=st.dictionaries(st.one_of(st.text(max_size=3), st.sampled_from(SURROGATES)), json_like, max_size=2),
    )
    scored = st.builds(NodeWithScore, node=node, score=st.one_of(st.none(), st.floats(allow_nan=False)))
    return st.one_of(st.lists(st.one_of(node, scored, scalars), max_size=3), node, scored, scalars)


@pytest.fixture(scope="module")
def llama_module() -> Any:
    return pytest.importorskip("lateint_plugins.llama_index", reason="pip install 'lateint-plugins[llama-index]'")


@SMALL
@given(data=st.data())
def test_llama_index_entry_points(
    make_store: Callable[[], LateInteractionStore], llama_module: Any, data: st.DataObject
) -> None:
    from llama_index.core.schema import QueryBundle

    store = make_store()
    retriever = llama_module.LateInteractionRetriever(store, similarity_top_k=2)
    reranker = llama_module.LateInteractionRerank(top_n=2, encoder=store.encoder)
    query, nodes, node_ids = data.draw(texts_item), data.draw(_llama_nodes()), data.draw(sequences)
    top_k, filters_value = data.draw(ks), data.draw(filters)
    before = _store_state(store)
    bundle = QueryBundle(query) if data.draw(st.booleans()) else query
    for call in (
        lambda: retriever.retrieve(bundle),
        lambda: reranker.postprocess_nodes(nodes, query_str=query),
        lambda: reranker.postprocess_nodes(nodes, query_bundle=bundle),
        lambda: llama_module.LateInteractionRetriever(store, similarity_top_k=top_k, filters=filters_value).retrieve(
            "cats"
        ),
    ):
        _typed(call)
        assert _same(_store_state(store), before)
    replace = data.draw(st.booleans())
    for write in (lambda: retriever.insert(nodes, replace=replace), lambda: retriever.delete(node_ids)):
        if _typed(write):
            before = _store_state(store)
        else:
            assert _same(_store_state(store), before)
    _assert_sane(store.index, store._texts)


# ---------------------------------------------------------------------------------------- Qdrant
@pytest.fixture(scope="module")
def make_qdrant(tiny_encoder: ColBERTEncoder, vectors: list[torch.Tensor]) -> Callable[[], Any]:
    """A fresh ``:memory:`` Qdrant store holding TEXTS (written from their vectors: no encoding per example)."""
    qdrant = pytest.importorskip("lateint_plugins.qdrant", reason="pip install 'lateint-plugins[qdrant]'")
    from qdrant_client import QdrantClient

    def make() -> Any:
        store = qdrant.QdrantLateInteractionStore(QdrantClient(":memory:"), "fuzz", tiny_encoder, device="cpu")
        store.add_embeddings(TEXTS, vectors, META, IDS)
        return store

    return make


def _qdrant_state(store: Any) -> list[tuple[str, str, str]]:
    """Every point of the collection: id, payload and vectors (a rejected call must change none of them)."""
    points, _ = store.client.scroll(store.collection_name, limit=10_000, with_payload=True, with_vectors=True)
    return sorted(
        (str(p.id), json.dumps(p.payload, sort_keys=True), json.dumps(p.vector, sort_keys=True, default=repr))
        for p in points
    )


def _assert_sane_qdrant(store: Any) -> None:
    """What an accepted write may leave behind: every document whole, finite, UTF-8, with saveable metadata."""
    ids = store.ids()
    assert len(ids) == len(set(ids)) == len(store)
    embeddings = store.get_embeddings(ids)
    assert set(embeddings) == set(ids)
    assert all(bool(torch.isfinite(m).all()) and m.shape[0] > 0 for m in embeddings.values())
    for result in store.get(ids):
        json.dumps([result.id, result.text, result.metadata], allow_nan=False, ensure_ascii=False).encode("utf-8")


@SMALL
@given(data=st.data(), spoil=st.sampled_from([None, "texts", "ids", "metadatas", "embeddings"]), replace=st.booleans())
def test_qdrant_add_embeddings_one_bad_argument(
    make_qdrant: Callable[[], Any], data: st.DataObject, spoil: str | None, replace: bool
) -> None:
    store = make_qdrant()
    args = _documents(data)
    if spoil is not None:
        args[spoil] = _spoil(data, spoil, args[spoil])
    before = _qdrant_state(store)
    call = lambda: store.add_embeddings(  # noqa: E731
        args["texts"], args["embeddings"], args["metadatas"], args["ids"], replace=replace
    )
    if not _typed(call):
        assert _qdrant_state(store) == before
    _assert_sane_qdrant(store)


@SMALL
@given(
    data=st.data(),
    texts=sequences,
    embeddings=matrix_lists,
    metadatas=metadatas,
    ids=st.one_of(st.none(), sequences, st.lists(st.sampled_from(["a", "new", "", "\ud800"]), max_size=3)),
    replace=st.booleans(),
)
def test_qdrant_writes(
    make_qdrant: Callable[[], Any],
    data: st.DataObject,
    texts: Any,
    embeddings: Any,
    metadatas: Any,
    ids: Any,
    replace: bool,
) -> None:
    store = make_qdrant()
    batch_size = data.draw(st.one_of(st.integers(-1, 3), st.booleans(), st.none(), st.floats()))
    documents = data.draw(_langchain_documents()) if data.draw(st.booleans()) else data.draw(sequences)
    for write in (
        lambda: store.add_embeddings(texts, embeddings, metadatas, ids, replace=replace),
        lambda: store.add_texts(texts, metadatas, ids, replace=replace, batch_size=batch_size),
        lambda: store.add_documents(documents, ids=ids, replace=replace),
        lambda: store.delete(ids),
    ):
        before = _qdrant_state(store)
        if not _typed(write):
            assert _qdrant_state(store) == before
    _assert_sane_qdrant(store)


@SMALL
@given(data=st.data(), query=texts_item, queries=sequences, k=ks, filter=filters, ids=sequences)
def test_qdrant_reads(
    make_qdrant: Callable[[], Any], data: st.DataObject, query: Any, queries: Any, k: Any, filter: Any, ids: Any
) -> None:
    store = make_qdrant()
    query_embeddings = data.draw(matrix_lists)
    mode = data.draw(st.one_of(st.none(), st.sampled_from(["local", "native", "", "LOCAL"]), scalars))
    depth = data.draw(st.one_of(st.none(), ks))
    query_texts = data.draw(st.one_of(st.none(), sequences))
    before = _qdrant_state(store)
    for call in (
        lambda: store.search(query, k=k, filter=filter),
        lambda: store.search_batch(queries, k=k, filter=filter),
        lambda: store.search_embeddings(query_embeddings, k=k, filter=filter, mode=mode, candidate_depth=depth),
        lambda: store.search_embeddings(query_embeddings, k=2, query_texts=query_texts),
        lambda: store.get(ids),
        lambda: store.get_embeddings(ids),
        lambda: query in store,
    ):
        _typed(call)
        assert _qdrant_state(store) == before
