"""ExactIndex: brute-force answers, filters, add/remove, persistence, atomic saves, typed errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from lateint_plugins.core import _io
from lateint_plugins.core.errors import (
    CorruptIndexError,
    DimensionMismatchError,
    DuplicateIdError,
    IndexNotFoundError,
    InvalidInputError,
    LateInteractionError,
    UnknownIdError,
)
from lateint_plugins.core.index import ExactIndex, Index, load_index
from lateint_plugins.core.scoring import maxsim

DIM = 8


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def corpus(n: int = 60, seed: int = 0) -> tuple[list[str], list[torch.Tensor], list[dict]]:
    g = torch.Generator().manual_seed(seed)
    ids = [f"doc-{i}" for i in range(n)]
    docs = [unit(torch.randn(int(k), DIM, generator=g)) for k in torch.randint(1, 15, (n,), generator=g)]
    meta = [{"group": i % 3, "even": i % 2 == 0, "name": f"n{i}"} for i in range(n)]
    return ids, docs, meta


def queries(n: int = 4, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [unit(torch.randn(5, DIM, generator=g)) for _ in range(n)]


def brute_force(qs, ids, docs, k, keep=None):
    """Top-k ids by the definition over fp16-rounded vectors (what the index stores)."""
    keep = keep if keep is not None else [True] * len(ids)
    chosen = [i for i, flag in enumerate(keep) if flag]
    scores = maxsim(qs, [docs[i].half().float() for i in chosen])
    out = []
    for row in scores:
        top = torch.topk(row, min(k, len(chosen)))
        out.append(([ids[chosen[i]] for i in top.indices.tolist()], top.values))
    return out


@pytest.fixture
def index() -> ExactIndex:
    ids, docs, meta = corpus()
    ix = ExactIndex()
    ix.add(ids, docs, meta)
    return ix


def test_search_equals_brute_force(index: ExactIndex) -> None:
    ids, docs, _ = corpus()
    qs = queries()
    hits = index.search(qs, k=7)
    for row, (want_ids, want_scores) in zip(hits, brute_force(qs, ids, docs, 7), strict=True):
        assert [h.id for h in row] == want_ids
        torch.testing.assert_close(torch.tensor([h.score for h in row]), want_scores)
    single = index.search(qs[0], k=7)
    assert [h.id for h in single] == [h.id for h in hits[0]]
    assert len(index) == 60 and index.dim == DIM and index.n_tokens == sum(len(d) for d in docs)


def test_filter_is_a_candidate_subset_applied_before_scoring(index: ExactIndex) -> None:
    ids, docs, meta = corpus()
    qs = queries()
    keep = [m["group"] == 1 and m["even"] for m in meta]
    hits = index.search(qs, k=5, filter={"group": 1, "even": True})
    for row, (want_ids, _) in zip(hits, brute_force(qs, ids, docs, 5, keep), strict=True):
        assert [h.id for h in row] == want_ids
        assert all(h.metadata["group"] == 1 and h.metadata["even"] for h in row)
    # k larger than the matching set returns every match, not fewer.
    assert len(index.search(qs[0], k=100, filter={"group": 1, "even": True})) == sum(keep)
    assert index.search(qs[0], k=3, filter={"group": 99}) == []
    assert index.search(qs[0], k=3, filter={"missing-key": 1}) == []
    assert len(index.search(qs[0], k=3, filter={})) == 3


def test_add_in_batches_and_remove_equal_a_rebuilt_index(index: ExactIndex) -> None:
    ids, docs, meta = corpus()
    removed = {"doc-0", "doc-7", "doc-31", "doc-59"}
    index.remove(sorted(removed))
    extra_ids, extra_docs, extra_meta = corpus(10, seed=5)
    extra_ids = [f"new-{i}" for i in range(10)]
    index.add(extra_ids[:4], extra_docs[:4], extra_meta[:4])
    index.add(extra_ids[4:], extra_docs[4:], extra_meta[4:])

    survivors = [i for i, d in enumerate(ids) if d not in removed]
    rebuilt = ExactIndex()
    rebuilt.add(
        [ids[i] for i in survivors] + extra_ids,
        [docs[i] for i in survivors] + extra_docs,
        [meta[i] for i in survivors] + extra_meta,
    )
    qs = queries()
    assert index.search(qs, k=10) == rebuilt.search(qs, k=10)
    assert index.ids == rebuilt.ids
    assert not any(h.id in removed for row in index.search(qs, k=70) for h in row)
    assert index.metadata("new-3") == extra_meta[3]


def test_save_load_round_trip(index: ExactIndex, tmp_path: Path) -> None:
    qs = queries()
    index.save(tmp_path / "ix")
    loaded = load_index(tmp_path / "ix")
    assert isinstance(loaded, ExactIndex)
    assert loaded.ids == index.ids and loaded.dim == index.dim
    assert loaded.search(qs, k=10, filter={"group": 2}) == index.search(qs, k=10, filter={"group": 2})
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["format"] == "lateint-plugins" and manifest["kind"] == "exact" and manifest["version"] == 1
    assert not list(tmp_path.glob(".ix.*")), "temporary folders must not be left behind"
    # The loaded index stays writable.
    loaded.remove(["doc-1"])
    loaded.add(["z"], [unit(torch.randn(3, DIM))])
    assert len(loaded) == len(index)


def test_crash_mid_save_keeps_previous_index_loadable(
    index: ExactIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ix"
    index.save(path)
    before = load_index(path).ids
    index.remove(["doc-3"])

    def crash(self, folder):
        (folder / "tokens.npy").write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ExactIndex, "_write", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        index.save(path)
    assert load_index(path).ids == before
    assert not list(tmp_path.glob(".ix.tmp-*"))


def test_crash_between_renames_is_recovered(index: ExactIndex, tmp_path: Path) -> None:
    path = tmp_path / "ix"
    index.save(path)
    os.replace(path, tmp_path / ".ix.old-deadbeef")  # the state right after moving the old copy aside
    assert load_index(path).ids == index.ids


def test_typed_errors_name_the_argument(index: ExactIndex, tmp_path: Path) -> None:
    doc = unit(torch.randn(3, DIM))
    with pytest.raises(DuplicateIdError, match="already in the index"):
        index.add(["doc-1"], [doc])
    with pytest.raises(DuplicateIdError, match="repeats"):
        index.add(["a", "a"], [doc, doc])
    with pytest.raises(DimensionMismatchError, match="dimension 5"):
        index.add(["a"], [torch.randn(3, 5)])
    with pytest.raises(UnknownIdError, match="nothing was removed"):
        index.remove(["doc-1", "nope"])
    assert "doc-1" in index
    with pytest.raises(InvalidInputError, match="ids"):
        index.add("abc", [doc])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"ids\[0\]"):
        index.add([3], [doc])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="one per id"):
        index.add(["a", "b"], [doc])
    with pytest.raises(InvalidInputError, match=r"embeddings\[0\]"):
        index.add(["a"], [torch.zeros(0, DIM)])
    with pytest.raises(InvalidInputError, match="JSON"):
        index.add(["a"], [doc], [{"bad": object()}])
    with pytest.raises(InvalidInputError, match="k must be"):
        index.search(doc, k=0)
    with pytest.raises(DimensionMismatchError):
        index.search(torch.randn(3, 5))
    with pytest.raises(InvalidInputError, match="filter"):
        index.search(doc, filter=["group"])  # type: ignore[arg-type]
    assert len(index) == 60, "failed calls must not change the index"
    assert issubclass(UnknownIdError, LateInteractionError)


def test_missing_and_corrupt_folders(index: ExactIndex, tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError):
        load_index(tmp_path / "nothing-here")
    (tmp_path / "not-an-index").mkdir()
    with pytest.raises(IndexNotFoundError, match="manifest"):
        load_index(tmp_path / "not-an-index")

    index.save(tmp_path / "a")
    (tmp_path / "a" / "tokens.npy").unlink()
    with pytest.raises(CorruptIndexError, match=r"tokens\.npy"):
        load_index(tmp_path / "a")

    index.save(tmp_path / "b")
    (tmp_path / "b" / "manifest.json").write_text("{ not json")
    with pytest.raises(CorruptIndexError, match=r"manifest\.json"):
        load_index(tmp_path / "b")

    index.save(tmp_path / "c")
    np.save(tmp_path / "c" / "lengths.npy", np.array([1, 2, 3]))
    with pytest.raises(CorruptIndexError, match="do not match"):
        load_index(tmp_path / "c")

    index.save(tmp_path / "d")
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    (tmp_path / "d" / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(CorruptIndexError, match="newer"):
        load_index(tmp_path / "d")

    index.save(tmp_path / "e")
    np.save(tmp_path / "e" / "tokens.npy", np.array([object()]), allow_pickle=True)
    with pytest.raises(CorruptIndexError):
        load_index(tmp_path / "e")  # pickled arrays are refused, never unpickled


def test_refuses_to_overwrite_a_folder_that_is_not_an_index(index: ExactIndex, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(InvalidInputError, match="refusing"):
        index.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_empty_index_search_and_save(tmp_path: Path) -> None:
    ix = ExactIndex()
    assert ix.search(torch.randn(2, 5), k=3) == []
    with pytest.raises(DimensionMismatchError):
        ix.add(["a", "b"], [torch.randn(2, 4), torch.randn(2, 5)])
    assert ix.dim is None, "neither a search nor a failed add may fix the dimension"
    ix.add(["a"], [unit(torch.randn(2, 4))])
    ix.remove(["a"])
    assert len(ix) == 0 and ix.search(torch.randn(2, 4), k=3) == []
    ix.save(tmp_path / "empty")
    assert len(Index.load(tmp_path / "empty")) == 0


def test_manifest_kind_is_checked(index: ExactIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "ix")
    with pytest.raises(CorruptIndexError, match="expected"):
        _io.read_manifest(tmp_path / "ix", ["plaid"])


def test_growth_buffers_add_one_at_a_time_equals_one_add(tmp_path: Path) -> None:
    ids, docs, meta = corpus(40, seed=5)
    whole = ExactIndex(device="cpu")
    whole.add(ids, docs, meta)
    grown = ExactIndex(device="cpu")
    for i in range(len(ids)):
        grown.add(ids[i : i + 1], docs[i : i + 1], meta[i : i + 1])
        if i % 7 == 0:
            grown.search(queries(1)[0], k=3)  # searches between adds read the buffers as they stand
    assert grown._token_buffer.capacity >= grown.n_tokens == whole.n_tokens
    qs = queries(3)
    for a, b in zip(grown.search(qs, k=10), whole.search(qs, k=10), strict=True):
        assert [(h.id, h.score) for h in a] == [(h.id, h.score) for h in b]
    # Delete then add, then save and load: still the same as an index built from the survivors.
    grown.remove(ids[:5])
    grown.add(["late"], [docs[0]], [meta[0]])
    rebuilt = ExactIndex(device="cpu")
    rebuilt.add([*ids[5:], "late"], [*docs[5:], docs[0]], [*meta[5:], meta[0]])
    grown.save(tmp_path / "grown")
    loaded = load_index(tmp_path / "grown", device="cpu")
    loaded.add(["after-load"], [docs[1]])
    rebuilt.add(["after-load"], [docs[1]])
    for a, b in zip(loaded.search(qs, k=10), rebuilt.search(qs, k=10), strict=True):
        assert [(h.id, h.score) for h in a] == [(h.id, h.score) for h in b]


def test_growth_buffer_appends_in_place_and_doubles() -> None:
    from lateint_plugins.core.index import GrowthBuffer

    buffer = GrowthBuffer(torch.float16, (4,))
    buffer.append(torch.ones(3, 4))
    storage = buffer.view.untyped_storage().data_ptr()
    capacity = buffer.capacity
    buffer.append(torch.zeros(capacity - 3, 4))  # fills the capacity: no reallocation
    assert buffer.view.untyped_storage().data_ptr() == storage
    buffer.append(torch.full((1, 4), 2.0))  # one past it: the capacity at least doubles
    assert buffer.capacity >= 2 * capacity and len(buffer) == capacity + 1
    assert buffer.view[:3].eq(1).all() and buffer.view[-1].eq(2).all()
    buffer.truncate(3)
    assert buffer.view.shape == (3, 4)
