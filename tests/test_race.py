"""Readers against a writer: searches and loads running while another thread adds, deletes and saves.

Documents come in groups of four added and deleted together, so any consistent view holds whole
groups only. Readers search (every document is returned at this size, exact and PLAID alike) and
load the saved folder while the writer works; every view must be whole groups with their own texts,
every load must be one of the states the writer saved, and no thread may raise. Bounded by the
writer's step count, not by time.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
import torch
from _saved import random_documents
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import IndexNotFoundError
from lateint_plugins.core.index import ExactIndex
from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex
from lateint_plugins.core.store import LateInteractionStore

GROUP = 4
WRITER_STEPS = 24


def _group(g: int) -> tuple[list[str], list[torch.Tensor], list[str]]:
    ids, docs = random_documents(GROUP, seed=100 + g, prefix=f"g{g}-")
    return ids, docs, [f"text of {i}" for i in ids]


def _groups_of(ids: list[str], texts: dict[str, str] | None = None) -> frozenset[str]:
    """The groups a view holds; raises AssertionError if one is partial or a text is not its own."""
    counts = Counter(i.split("-")[0] for i in ids)
    assert len(ids) == len(set(ids)), f"duplicate ids in {ids}"
    partial = {g: n for g, n in counts.items() if n != GROUP}
    assert not partial, f"partial groups {partial}"
    if texts is not None:
        assert all(texts[i] == f"text of {i}" for i in ids)
    return frozenset(counts)


@pytest.mark.parametrize("kind", ["exact", "plaid"])
def test_readers_see_whole_writes_while_a_writer_adds_deletes_and_saves(
    kind: str, tmp_path: Path, tiny_encoder: ColBERTEncoder
) -> None:
    if kind == "exact":
        index: ExactIndex | PLAIDIndex = ExactIndex(device="cpu")
    else:
        index = PLAIDIndex(config=PLAIDConfig(n_centroids=8, kmeans_niters=2), device="cpu")
    store = LateInteractionStore(tiny_encoder, index)
    for g in range(3):
        ids, docs, texts = _group(g)
        store.add_embeddings(texts, docs, ids=ids)
    path = tmp_path / "store"
    saved_states: list[frozenset[str]] = []
    loaded_states: list[frozenset[str]] = []
    errors: list[str] = []
    done = threading.Event()
    first_saved = threading.Event()
    searches = [0]

    def writer() -> None:
        try:
            live = [0, 1, 2]
            for step in range(WRITER_STEPS):
                g = 3 + step
                ids, docs, texts = _group(g)
                store.add_embeddings(texts, docs, ids=ids)
                live.append(g)
                if step % 3 == 2:
                    victim = live.pop(0)
                    store.delete([f"g{victim}-{k}" for k in range(GROUP)])
                if step % 2 == 1:
                    state = frozenset(f"g{x}" for x in live)
                    saved_states.append(state)  # recorded first: a loader may see the save at once
                    store.save(path)
                    first_saved.set()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(f"writer: {type(exc).__name__}: {exc}")
        finally:
            done.set()

    def searcher() -> None:
        try:
            while not done.is_set():
                for row in store.search_batch(["first query", "second query"], k=1000):
                    scores = [r.score for r in row]
                    assert scores == sorted(scores, reverse=True)
                    _groups_of([r.id for r in row], {r.id: r.text for r in row})
                searches[0] += 1
        except Exception as exc:
            errors.append(f"searcher: {type(exc).__name__}: {exc}")

    def loader() -> None:
        try:
            while not done.is_set():
                exists = first_saved.is_set()
                try:
                    loaded = LateInteractionStore.load(path, encoder=tiny_encoder)
                except IndexNotFoundError:
                    if exists:  # once a save has completed, the folder is never missing
                        raise
                    continue
                loaded_states.append(_groups_of(loaded.index.ids, loaded._texts))
        except Exception as exc:
            errors.append(f"loader: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=f) for f in (writer, searcher, searcher, loader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, "\n".join(errors)
    assert searches[0] > 0 and loaded_states
    assert all(state in saved_states for state in loaded_states)
    final = LateInteractionStore.load(path, encoder=tiny_encoder)
    assert _groups_of(final.index.ids, final._texts) == saved_states[-1]
    assert [p.name for p in tmp_path.iterdir()] == ["store"]
