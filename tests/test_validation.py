"""Every bad input gets a typed error that names the caller's argument, before anything changes (issue 12).

Causes covered here: 4 (NaN/inf, integer/bool/complex/object dtypes, wrong rank or width at every
vector entry point), 5 (empty documents are legal; a Cranfield-style BEIR corpus evaluates), 6
(strings that are not valid UTF-8), 7 (bare ``str``, ``None``, unhashable ids) and 9 (messages name
``query``, ``documents[i]``, never internal names). ``test_fuzz_inputs.py`` covers the same ground
with random hostile inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from lateint_plugins.core._checks import check_ids, check_k, check_matrix, check_metadata, check_texts
from lateint_plugins.core.cli import main
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import DimensionMismatchError, DuplicateIdError, InvalidInputError
from lateint_plugins.core.evaluation import evaluate, load_beir
from lateint_plugins.core.index import ExactIndex, Index
from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex
from lateint_plugins.core.rerank import rerank
from lateint_plugins.core.scoring import maxsim
from lateint_plugins.core.store import LateInteractionStore

TEXTS = ["The cat sat on the mat.", "Qubits can be in superposition.", "Bread rises because of yeast."]
IDS = ["a", "b", "c"]
DIM = 16


def _unit(n: int, dim: int = DIM, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _bad_matrices() -> list[tuple[str, Any, str]]:
    """(label, matrix, what the message must say) for every kind of bad vector input."""
    good = _unit(3)
    nan, inf, ninf = good.clone(), good.clone(), good.clone()
    nan[1, 2], inf[0, 0], ninf[2, 5] = float("nan"), float("inf"), float("-inf")
    obj = np.empty((3, DIM), dtype=object)
    obj[:] = 0.5
    return [
        ("nan", nan, "NaN or infinite"),
        ("+inf", inf, "NaN or infinite"),
        ("-inf", ninf, "NaN or infinite"),
        ("nan numpy", nan.numpy().astype(np.float64), "NaN or infinite"),
        ("int64", torch.ones(3, DIM, dtype=torch.long), "real floats"),
        ("bool", torch.ones(3, DIM, dtype=torch.bool), "real floats"),
        ("complex", torch.ones(3, DIM, dtype=torch.complex64), "real floats"),
        ("object numpy", obj, "real floats"),
        ("int numpy", np.ones((3, DIM), dtype=np.int32), "real floats"),
        ("list", good.tolist(), "torch.Tensor or numpy array"),
        ("None", None, "torch.Tensor or numpy array"),
        ("1-D", good[0], "2-D"),
        ("3-D", good[None], "2-D"),
        ("no rows", good[:0], "non-empty 2-D"),
        ("wrong width", _unit(3, DIM + 1), "dimension"),
    ]


BAD_MATRICES = _bad_matrices()


@pytest.fixture
def store(tiny_encoder: ColBERTEncoder) -> LateInteractionStore:
    s = LateInteractionStore(tiny_encoder)
    s.add_texts(TEXTS, [{"n": i} for i in range(3)], IDS)
    return s


def _state(store: LateInteractionStore) -> tuple[list[str], list[Any], list[torch.Tensor]]:
    index = store.index
    assert isinstance(index, ExactIndex)
    return index.ids, store.get(index.ids), [e.clone() for e in index.embeddings()]


def _same(
    a: tuple[list[str], list[Any], list[torch.Tensor]], b: tuple[list[str], list[Any], list[torch.Tensor]]
) -> bool:
    return a[0] == b[0] and a[1] == b[1] and all(torch.equal(x, y) for x, y in zip(a[2], b[2], strict=True))


# ---------------------------------------------------------------------------------------- numbers (cause 4)
@pytest.mark.parametrize(("label", "bad", "says"), BAD_MATRICES, ids=[b[0] for b in BAD_MATRICES])
def test_bad_vectors_are_rejected_at_every_entry_point(
    store: LateInteractionStore, tiny_encoder: ColBERTEncoder, label: str, bad: Any, says: str
) -> None:
    good = _unit(4, seed=1)
    before = _state(store)
    error = DimensionMismatchError if label == "wrong width" else InvalidInputError

    with pytest.raises(error, match=rf"embeddings\[1\].*{says}|{says}.*embeddings\[1\]"):
        store.add_embeddings(["x", "y"], [good, bad], ids=["x", "y"])
    assert _same(_state(store), before)
    with pytest.raises(error, match=r"embeddings\[1\]"):
        store.index.add(["x", "y"], [good, bad])
    assert _same(_state(store), before)
    if label not in ("1-D", "3-D"):  # a 2-D or 3-D array is read as one query or a batch of them
        with pytest.raises(error, match=r"query_embeddings\b"):
            store.index.search(bad, k=2)
    with pytest.raises(error, match=r"query_embeddings\[1\]"):
        store.index.search([good, bad], k=2)
    for index in (ExactIndex(device="cpu"), PLAIDIndex(config=PLAIDConfig(nbits=2), device="cpu")):
        with pytest.raises(error, match=r"embeddings\[1\]"):
            index.add(["x", "y"], [good, bad])
        assert len(index) == 0 and index.dim is None

    if label not in ("no rows", "wrong width"):  # both are fine for maxsim (a document may have no tokens)
        with pytest.raises(InvalidInputError, match=r"documents\[1\]"):
            maxsim([good], [good, bad])
        with pytest.raises(InvalidInputError, match=r"queries\[0\]"):
            maxsim([bad], [good])
    if label != "no rows":
        with pytest.raises(error, match=r"document_embeddings\[1\]"):
            rerank("cats", ["one", "two"], encoder=tiny_encoder, document_embeddings=[good, bad])


def test_padded_maxsim_inputs_are_checked_too() -> None:
    q = torch.zeros(1, 2, DIM)
    q[0, 0, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="queries holds NaN"):
        maxsim(q, [_unit(2)])
    with pytest.raises(InvalidInputError, match="documents must be 3-D"):
        maxsim(_unit(2)[None], torch.zeros(2, 3, 0))
    with pytest.raises(InvalidInputError, match="documents_lengths"):
        maxsim(_unit(2)[None], _unit(3), documents_lengths=[1.5, 1.5])
    with pytest.raises(InvalidInputError, match="documents_lengths"):
        maxsim(_unit(2)[None], _unit(3), documents_lengths=[4, -1])
    with pytest.raises(InvalidInputError, match="device"):
        maxsim(_unit(2)[None], [_unit(3)], device="not-a-device")
    with pytest.raises(InvalidInputError, match="documents must be a list"):
        maxsim(_unit(2)[None], None)  # type: ignore[arg-type]


def test_a_non_finite_document_can_no_longer_rank_first(store: LateInteractionStore) -> None:
    """The original symptom: a NaN document was accepted and then ranked first for every query."""
    poisoned = torch.full((3, DIM), float("nan"))
    with pytest.raises(InvalidInputError, match="NaN"):
        store.add_embeddings(["poison"], [poisoned], ids=["poison"])
    assert all(r.id != "poison" for r in store.search("anything at all", k=10))


def test_check_matrix_returns_the_tensor_unchanged() -> None:
    x = _unit(2)
    assert check_matrix(x, "x", DIM) is x
    arr = np.ones((2, 3), dtype=np.float16)
    assert check_matrix(arr, "x").dtype == torch.float16
    assert check_matrix(np.zeros((0, 3), dtype=np.float32), "x", allow_empty=True).shape == (0, 3)


# ---------------------------------------------------------------------------------------- text and ids (6, 7)
def test_strings_that_are_not_utf8_are_rejected_before_anything_changes(
    store: LateInteractionStore, tiny_encoder: ColBERTEncoder, tmp_path: Path
) -> None:
    before = _state(store)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"texts": ["ok", "bad \ud800"]}, r"texts\[1\] cannot be encoded as UTF-8"),
        ({"texts": ["ok", "ok"], "ids": ["x", "\udfff"]}, r"ids\[1\] cannot be encoded as UTF-8"),
        ({"texts": ["ok"], "metadatas": [{"k": "v\ud800"}]}, r"metadatas\[0\]\['k'\] cannot be encoded"),
        ({"texts": ["ok"], "metadatas": [{"\ud800": 1}]}, r"a key of metadatas\[0\] cannot be encoded"),
        (
            {"texts": ["ok"], "metadatas": [{"k": [1, {"deep": ["\ud800"]}]}]},
            r"metadatas\[0\]\['k'\]\[1\]\['deep'\]\[0\]",
        ),
    ]
    for kwargs, match in cases:
        for replace in (False, True):
            with pytest.raises(InvalidInputError, match=match):
                store.add_texts(**kwargs, replace=replace)
    with pytest.raises(InvalidInputError, match="query cannot be encoded"):
        store.search("what \ud800")
    with pytest.raises(InvalidInputError, match=r"queries\[0\] cannot be encoded"):
        store.search_batch(["\ud800"])
    with pytest.raises(InvalidInputError, match=r"texts\[0\] cannot be encoded"):
        tiny_encoder.encode_documents(["\ud800"])
    with pytest.raises(InvalidInputError, match=r"documents\[0\] cannot be encoded"):
        rerank("q", ["\ud800"], encoder=tiny_encoder)
    with pytest.raises(InvalidInputError, match=r"ids\[0\] cannot be encoded"):
        store.delete(["\ud800"])
    assert _same(_state(store), before)
    store.save(tmp_path / "still-saves")  # the original symptom: every later save failed
    assert LateInteractionStore.load(tmp_path / "still-saves", encoder=tiny_encoder).index.ids == IDS


def test_a_bare_str_none_or_unhashable_where_a_list_belongs_is_an_error(store: LateInteractionStore) -> None:
    before = _state(store)
    with pytest.raises(InvalidInputError, match="bare str 'a'"):
        store.get("a")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="bare str"):
        store.delete("a")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="ids must be a list of str ids, got a bare str 'xy'"):
        store.add_texts(["one", "two"], ids="xy")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="bare str"):
        store.index.remove("a")  # type: ignore[arg-type]
    for call in (
        lambda: store.add_texts(None),  # type: ignore[arg-type]
        lambda: store.get(None),  # type: ignore[arg-type]
        lambda: store.delete(None),  # type: ignore[arg-type]
        lambda: store.search(None),  # type: ignore[arg-type]
        lambda: store.search_batch(None),  # type: ignore[arg-type]
        lambda: store.add_embeddings(["x"], None, ids=["x"]),  # type: ignore[arg-type]
        lambda: store.get([["a"]]),  # type: ignore[list-item]
        lambda: store.delete([{"a": 1}]),  # type: ignore[list-item]
        lambda: store.add_texts(["x"], ids=[["unhashable"]]),  # type: ignore[list-item]
        lambda: store.add_texts(["x"], ids=[""]),
        lambda: store.add_texts(["x"], metadatas={"a": 1}),  # type: ignore[arg-type]
        lambda: store.index.metadata(["a"]),  # type: ignore[arg-type]
        lambda: store.search("cats", k=True),
        lambda: store.search("cats", k=0),
        lambda: store.search("cats", filter=["a"]),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidInputError):
            call()
    assert [r.id for r in store.get(["c", "a", "zzz", "a"])] == ["c", "a", "a"]
    assert ["a"] not in store  # type: ignore[comparator-overlap]
    assert len(store.search("cats", k=10**12)) == 3 and len(store.search("cats", k=np.int64(2))) == 2
    assert _same(_state(store), before)


def test_metadata_must_be_json_with_str_keys() -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    for bad, match in (
        ({1: "a"}, "key 1 of type int"),
        ({"a": {2: 3}}, r"metadata\['a'\] has the key 2"),
        ({"a": float("nan")}, "JSON-serialisable"),
        ({"a": object()}, "JSON-serialisable"),
        ({"a": np.float32(1.0)}, "JSON-serialisable"),
        (circular, "JSON-serialisable"),
        ([("a", 1)], "must be a dict"),
    ):
        with pytest.raises(InvalidInputError, match=match):
            check_metadata(bad, "metadata")
    nested = {"tags": ("x", "y"), "n": {"deep": [1, 2.5, None, True]}}
    copy = check_metadata(nested)
    assert copy == {"tags": ["x", "y"], "n": {"deep": [1, 2.5, None, True]}}  # tuples come back as lists
    nested["n"]["deep"].append(9)  # type: ignore[index]
    assert copy["n"]["deep"] == [1, 2.5, None, True]  # a deep copy: later edits by the caller do not leak in


def test_shared_checks_name_the_argument() -> None:
    with pytest.raises(DuplicateIdError, match=r"node_ids repeats \['x'\]"):
        check_ids(["x", "y", "x"], "node_ids")
    with pytest.raises(InvalidInputError, match=r"documents\[1\] must be a str, got int"):
        check_texts(["a", 3], "documents")
    with pytest.raises(InvalidInputError, match="top_n must be a positive int, got the bool True"):
        check_k(True, "top_n")
    assert check_texts(("", "  "), "documents") == ["", "  "]
    assert check_k(np.int32(3)) == 3


# ---------------------------------------------------------------------------------------- empty texts (5, 9)
def test_empty_documents_are_legal_and_an_empty_query_names_query(
    store: LateInteractionStore, tiny_encoder: ColBERTEncoder
) -> None:
    empty, blank = tiny_encoder.encode_documents(["", "   "])
    assert empty.shape == (3, DIM) and torch.equal(empty, blank)  # [CLS], the [D] marker, [SEP]
    store.add_texts(["", " \n\t "], [{"kind": "empty"}, None], ["e1", "e2"])
    hits = store.search("cats", k=10)
    assert {"e1", "e2"} <= {h.id for h in hits} and store.get(["e1"])[0].text == ""
    assert rerank("cats", ["", "The cat sat on the mat."], encoder=tiny_encoder)[0].index == 1

    for call, name in (
        (lambda: store.search(""), r"^query is empty"),
        (lambda: store.search("  \n"), r"^query is empty"),
        (lambda: store.search_batch(["cats", ""]), r"^queries\[1\] is empty"),
        (lambda: rerank(" ", ["doc"], encoder=tiny_encoder), r"^query is empty"),
        (lambda: rerank("q", ["doc", 5], encoder=tiny_encoder), r"^documents\[1\] must be a str"),  # type: ignore[list-item]
        (lambda: tiny_encoder.encode_queries(""), r"^texts is empty"),
    ):
        with pytest.raises(InvalidInputError, match=name) as info:
            call()
        assert "texts[" not in str(info.value)  # never the encoder's internal argument name
    assert store.search_batch([]) == []


def _write_cranfield_like(folder: Path) -> Path:
    """A BEIR-layout collection with two empty documents, one of them judged relevant (as in Cranfield)."""
    (folder / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "1", "title": "experimental investigation of the aerodynamics of a wing", "text": "slipstream"},
        {"_id": "2", "title": "", "text": ""},
        {"_id": "3", "title": "simple shear flow past a flat plate", "text": "boundary layer"},
        {"_id": "4", "title": "", "text": ""},
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus), encoding="utf-8")
    queries = [{"_id": "1", "text": "what similarity laws must be obeyed"}, {"_id": "2", "text": "boundary layer"}]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\t2\t2\n2\t3\t1\n", encoding="utf-8")
    return folder


def test_a_cranfield_style_corpus_with_empty_documents_evaluates(tmp_path: Path, tiny_pylate_path: Path) -> None:
    data = _write_cranfield_like(tmp_path / "cranfield")
    dataset = load_beir(data)
    assert dataset.document_texts()[1][1] == "" and dataset.qrels["1"] == {"2": 2}
    report = tmp_path / "metrics.json"
    result = CliRunner().invoke(
        main,
        [
            *("eval", "--data", str(data), "--model", str(tiny_pylate_path), "--device", "cpu"),
            *("--metric", "recall@4", "--metric", "ndcg@10", "--output", str(report)),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(report.read_text())["metrics"]
    assert json.loads(report.read_text())["n_documents"] == 4
    # Every document comes back at k=4, the empty one judged relevant included.
    assert metrics["recall@4"] == 1.0 and 0.0 < metrics["ndcg@10"] <= 1.0


def test_evaluate_rejects_judgments_that_are_not_numbers() -> None:
    with pytest.raises(InvalidInputError, match=r"qrels\['q'\]\['d'\]: a judged score must be a finite number"):
        evaluate({"q": ["d"]}, {"q": {"d": "1"}})
    with pytest.raises(InvalidInputError, match="document ids must be strings"):
        evaluate({"q": ["d"]}, {"q": {1: 1}})
    with pytest.raises(InvalidInputError, match="metrics"):
        evaluate({"q": ["d"]}, {"q": {"d": 1}}, metrics=None)  # type: ignore[arg-type]
    assert evaluate({"q": ["d"]}, {"q": {"d": 1}}, metrics=["recall@1"]) == {"recall@1": 1.0}


def test_every_index_kind_checks_the_same_way() -> None:
    for index in (ExactIndex(device="cpu"), PLAIDIndex(config=PLAIDConfig(nbits=2), device="cpu")):
        assert isinstance(index, Index)
        with pytest.raises(InvalidInputError, match=r"metadata\[0\] must be a dict"):
            index.add(["x"], [_unit(2)], ["not a dict"])  # type: ignore[list-item]
        with pytest.raises(InvalidInputError, match="one dict"):
            index.add(["x"], [_unit(2)], {"a": 1})  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="embeddings must be a list"):
            index.add(["x"], None)  # type: ignore[arg-type]
        assert len(index) == 0 and index.dim is None


def test_index_kind_and_instance_are_checked(tiny_encoder: ColBERTEncoder) -> None:
    from lateint_plugins.core.index import create_index

    for kind in (["exact"], None, 3, "annoy"):
        with pytest.raises(InvalidInputError, match="index kind"):
            create_index(kind)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="index must be an Index"):
        LateInteractionStore(tiny_encoder, ["not", "an", "index"])  # type: ignore[arg-type]
