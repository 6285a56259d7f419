"""Crash safety of Qdrant writes: kill a writer before each write step, once and twice in a row.

A forked child replaces multi-window documents, adds one and deletes one, and ``os._exit``\\ s just
before its i-th write step. The parent then reopens the collection and checks that every document
is wholly old or wholly new (text, metadata, token vectors, local and native scores, filters) and
that :meth:`QdrantLateInteractionStore.repair` leaves exactly the committed points.

``path=`` mode (embedded Qdrant) always runs; its steps are the SQLite commits of single points
(``CollectionPersistence.persist`` / ``delete``), finer than client calls: a multi-point upsert can
die half-way. Against a server (``QDRANT_URL`` set) the steps are the client's write calls.
"""

from __future__ import annotations

import os
import shutil
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lateint_plugins.core import ColBERTEncoder
from lateint_plugins.core.scoring import maxsim
from qdrant_client import QdrantClient

from lateint_plugins.qdrant import CollectionConfig, QdrantLateInteractionStore
from lateint_plugins.qdrant.layout import TOKENS_FP16

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the crash harness forks a child writer (POSIX only)")

WINDOW = 4  # max_tokens_per_point: documents of 5+ tokens span several points
KILLED = 77  # the child's exit code when it killed itself at the chosen step
LAYOUTS = {
    "fp16": CollectionConfig(token_layout="fp16"),  # a token multivector: native scores checked too
    "plaid-fp16": CollectionConfig(),  # the default, below codec_training_tokens: fp16 tokens in the payload
    # The old documents' 27 tokens are below 40, with the new ones above: the write under test trains the
    # codec and compresses the documents written before it (kills land in each of those steps too).
    "plaid-trains": CollectionConfig(codec_training_tokens=40, n_centroids=8),
}


@dataclass(frozen=True)
class Version:
    text: str
    metadata: dict[str, Any]
    tokens: torch.Tensor  # (n_tokens, dim), already at the fp16 precision Qdrant stores

    @property
    def n_windows(self) -> int:
        return -(-self.tokens.shape[0] // WINDOW)


def _unit(n: int, dim: int, seed: int) -> torch.Tensor:
    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)
    return x.half().float()


def _versions(dim: int) -> tuple[dict[str, Version], dict[str, Version | None]]:
    """Before and after the write: a (4 -> 3 windows), b (1 -> 2), c (3 windows -> deleted), d (new, 2)."""

    def v(doc: str, tag: str, words: str, n: int, seed: int) -> Version:
        return Version(f"{words} {doc} {tag}", {"doc": doc, "version": tag}, _unit(n, dim, seed))

    old = {
        "a": v("a", "old", "protein cell gene", 14, 1),
        "b": v("b", "old", "virus immune", 3, 2),
        "c": v("c", "old", "brain neuron heart", 10, 3),
    }
    new: dict[str, Version | None] = {
        "a": v("a", "new", "cancer drug trial", 10, 11),
        "b": v("b", "new", "insulin obesity", 7, 12),
        "c": None,
        "d": v("d", "new", "vaccine tumor signal", 6, 13),
    }
    return old, new


def _stored(store: QdrantLateInteractionStore, tokens: torch.Tensor) -> torch.Tensor:
    """The token vectors ``store`` reads back for ``tokens``: as they are, or through its codec once it has one."""
    codec = store.codec
    return tokens if codec is None else codec.decompress(*codec.compress(tokens))


def _open(client: QdrantClient, name: str, encoder: ColBERTEncoder, **kwargs: Any) -> QdrantLateInteractionStore:
    return QdrantLateInteractionStore(
        client, name, encoder, max_tokens_per_point=WINDOW, write_batch_size=2, candidate_depth=64, device="cpu",
        **kwargs,
    )  # fmt: skip


def _write(store: QdrantLateInteractionStore, new: dict[str, Version | None]) -> None:
    """The write under test: replace a and b, add d (one call), then delete c (if a killed run has not)."""
    kept = {d: v for d, v in new.items() if v is not None}
    store.add_embeddings(
        [v.text for v in kept.values()], [v.tokens for v in kept.values()], [v.metadata for v in kept.values()],
        list(kept), replace=True,
    )  # fmt: skip
    gone = [d for d, v in new.items() if v is None and d in store]
    if gone:
        store.delete(gone)


# ---------------------------------------------------------------------- checks
def _window_scores(q: torch.Tensor, tokens: torch.Tensor) -> float:
    """Native mode's score: Qdrant's MAX_SIM of each window on its own, best window kept."""
    return max(maxsim([q], [w])[0, 0].item() for w in tokens.split(WINDOW))


def assert_consistent(
    store: QdrantLateInteractionStore, old: dict[str, Version], new: dict[str, Version | None]
) -> dict[str, str | None]:
    """Every document is wholly old or wholly new (or absent as one of them); returns each one's state."""
    state: dict[str, str | None] = {}
    docs = sorted(set(old) | set(new))
    got = {r.id: r for r in store.get(docs)}
    vectors = store.get_embeddings(docs)
    present: dict[str, Version] = {}
    for d in docs:
        options = {"old": old.get(d), "new": new.get(d)}
        if d not in got:
            assert d not in vectors, f"{d}: vectors without a text"
            assert None in options.values(), f"{d} vanished: it is neither old nor new"
            state[d] = None
            continue
        matches = [
            tag
            for tag, v in options.items()
            if v is not None and (got[d].text, got[d].metadata) == (v.text, v.metadata)
        ]
        assert matches, f"{d}: text/metadata {got[d].text!r} {got[d].metadata} are neither old nor new"
        version = options[matches[0]]
        assert version is not None and d in vectors, f"{d}: text of {matches[0]} but its vectors are unreadable"
        want = _stored(store, version.tokens)
        torch.testing.assert_close(vectors[d], want, atol=1e-6, rtol=0, msg=f"{d}: vectors mixed")
        state[d], present[d] = matches[0], version
    assert len(store) == len(present) and sorted(store.ids()) == sorted(present)
    q = _unit(5, store.encoder.dim, 99)
    for mode in ("local", "native") if store.config.token_layout == "fp16" else ("local",):
        hits = store.search_embeddings([q], k=10, mode=mode)[0]
        assert sorted(h.id for h in hits) == sorted(present), f"{mode} search sees {[h.id for h in hits]}"
        for h in hits:
            v = present[h.id]
            tokens = _stored(store, v.tokens)
            want = maxsim([q], [tokens])[0, 0].item() if mode == "local" else _window_scores(q, v.tokens)
            assert h.score == pytest.approx(want, abs=1e-4), f"{mode} score of {h.id} is not its {state[h.id]} one"
            assert (h.text, h.metadata) == (v.text, v.metadata)
        for tag in ("old", "new"):  # stale windows carry the other version's metadata: never let them through
            want_ids = sorted(d for d, s in state.items() if s == tag)
            filtered = store.search_embeddings([q], k=10, mode=mode, filter={"version": tag})[0]
            assert sorted(h.id for h in filtered) == want_ids, f"{mode} filter version={tag}"
    return state


def assert_clean(store: QdrantLateInteractionStore, state: dict[str, str | None], old, new) -> None:
    """After repair: exactly the committed documents' points remain."""
    points, _ = store.client.scroll(store.collection_name, limit=1000, with_payload=["doc_id"])
    points = [p for p in points if p.payload]  # codec points have no doc_id
    want = sum((old if s == "old" else new)[d].n_windows for d, s in state.items() if s is not None)
    assert len(points) == want, f"{len(points)} points left, {want} committed"
    assert store.repair() == 0


# ---------------------------------------------------------------------- the child writer
def _run_child(body: Callable[[], None]) -> int:
    """Run ``body`` in a forked child; returns its exit code (``KILLED`` when it killed itself)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            body()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


class _Steps:
    """Counts write steps in the child; exits the process (no cleanup, like SIGKILL) before step ``kill_at``."""

    def __init__(self, kill_at: int | None) -> None:
        self.kill_at = kill_at
        self.count = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            if self.count == self.kill_at:
                os._exit(KILLED)
            return fn(*args, **kwargs)

        return step


@pytest.fixture
def versions(tiny_encoder: ColBERTEncoder) -> tuple[dict[str, Version], dict[str, Version | None]]:
    return _versions(tiny_encoder.dim)


# ---------------------------------------------------------------------- path= mode
class _PathHarness:
    """A baseline folder holding the old documents; each case writes on a copy of it."""

    def __init__(self, root: Path, encoder: ColBERTEncoder, old: dict[str, Version], config: CollectionConfig) -> None:
        self.root, self.encoder, self.name, self.config = root, encoder, "crash", config
        self.base = root / "base"
        client = QdrantClient(path=str(self.base))
        store = _open(client, self.name, encoder, config=config)
        store.add_embeddings([v.text for v in old.values()], [v.tokens for v in old.values()],
                             [v.metadata for v in old.values()], list(old))  # fmt: skip
        client.close()

    def copy(self, label: str) -> Path:
        folder = self.root / label
        shutil.copytree(self.base, folder)
        return folder

    def write(self, folder: Path, new: dict[str, Version | None], kill_at: int | None, counter: Path) -> int:
        """Run the write on ``folder`` in a child that dies before SQLite write number ``kill_at``."""

        def body() -> None:
            from qdrant_client.local import persistence

            steps = _Steps(kill_at)
            persistence.CollectionPersistence.persist = steps.wrap(persistence.CollectionPersistence.persist)
            persistence.CollectionPersistence.delete = steps.wrap(persistence.CollectionPersistence.delete)
            client = QdrantClient(path=str(folder))
            _write(_open(client, self.name, self.encoder, create=False), new)
            client.close()
            counter.write_text(str(steps.count))

        return _run_child(body)

    @contextmanager
    def reopen(self, folder: Path) -> Iterator[QdrantLateInteractionStore]:
        client = QdrantClient(path=str(folder))
        try:
            yield _open(client, self.name, self.encoder, create=False)
        finally:
            client.close()


@pytest.fixture(params=list(LAYOUTS))
def path_harness(request, tmp_path, tiny_encoder, versions, monkeypatch) -> _PathHarness:
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # the children are forked
    return _PathHarness(tmp_path, tiny_encoder, versions[0], LAYOUTS[request.param])


def test_path_mode_survives_a_kill_at_every_write_step(path_harness, versions, tmp_path) -> None:
    old, new = versions
    counter = tmp_path / "steps"
    dry = path_harness.copy("dry")
    assert path_harness.write(dry, new, None, counter) == 0
    n_steps = int(counter.read_text())
    assert n_steps >= 10  # windows, commits, stale windows and the delete: each its own step
    with path_harness.reopen(dry) as store:  # the write trained a codec where the layout says so
        assert (store.codec is not None) == (path_harness.config is LAYOUTS["plaid-trains"])
    seen = set()
    for kill_at in range(1, n_steps + 1):
        folder = path_harness.copy(f"kill-{kill_at}")
        assert path_harness.write(folder, new, kill_at, counter) == KILLED
        with path_harness.reopen(folder) as store:
            state = assert_consistent(store, old, new)
            seen.add(tuple(sorted(state.items(), key=str)))
            store.repair()
            assert assert_consistent(store, old, new) == state
            assert_clean(store, state, old, new)
    # The kills landed between the versions: all old first, all new at the end, mixed states between.
    assert len(seen) >= 3


def test_path_mode_survives_two_kills_in_a_row_and_the_next_write_cleans_up(path_harness, versions, tmp_path) -> None:
    old, new = versions
    counter = tmp_path / "steps"
    assert path_harness.write(path_harness.copy("dry"), new, None, counter) == 0
    n_steps = int(counter.read_text())
    for first in range(1, n_steps + 1):
        second = 1 + (first * 5) % n_steps  # a spread of second kill points, one per first
        folder = path_harness.copy(f"kill-{first}-{second}")
        assert path_harness.write(folder, new, first, counter) == KILLED
        code = path_harness.write(folder, new, second, counter)
        assert code in (0, KILLED)  # the retry may finish before its step `second` (less left to do)
        with path_harness.reopen(folder) as store:
            state = assert_consistent(store, old, new)
        if first % 3:
            continue
        # Finishing the write (no kill) gives the new version and deletes what the kills left.
        assert path_harness.write(folder, new, None, counter) == 0
        with path_harness.reopen(folder) as store:
            state = assert_consistent(store, old, new)
            assert state == {"a": "new", "b": "new", "c": None, "d": "new"}
            # c's own leftovers (its window 0 went first) are the only ones a write cannot reach.
            points, _ = store.client.scroll(store.collection_name, limit=1000, with_payload=["doc_id", TOKENS_FP16])
            points = [p for p in points if p.payload]  # codec points have no doc_id
            if store.codec is not None:  # the write that trained it compressed what was written before
                assert not [p.payload["doc_id"] for p in points if TOKENS_FP16 in p.payload]
            assert {p.payload["doc_id"] for p in points} <= {"a", "b", "c", "d"}
            assert sum(p.payload["doc_id"] != "c" for p in points) == sum(v.n_windows for v in new.values() if v)
            store.repair()
            assert_clean(store, state, old, new)


# ---------------------------------------------------------------------- a server
@pytest.fixture
def server_url() -> str:
    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("set QDRANT_URL to run the crash harness against a Qdrant server (none runs on the CI machines)")
    return url


def test_server_survives_a_kill_at_every_write_call(server_url, tiny_encoder, versions, tmp_path, monkeypatch) -> None:
    old, new = versions
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    counter = tmp_path / "steps"
    names: list[str] = []

    def fresh() -> str:
        names.append(f"crash-{uuid.uuid4().hex[:12]}")
        client = QdrantClient(url=server_url)
        store = _open(client, names[-1], tiny_encoder)
        store.add_embeddings([v.text for v in old.values()], [v.tokens for v in old.values()],
                             [v.metadata for v in old.values()], list(old))  # fmt: skip
        client.close()
        return names[-1]

    def write(name: str, kill_at: int | None) -> int:
        def body() -> None:
            client = QdrantClient(url=server_url)
            steps = _Steps(kill_at)
            for method in ("upsert", "delete", "set_payload", "overwrite_payload", "delete_vectors"):
                setattr(client, method, steps.wrap(getattr(client, method)))
            _write(_open(client, name, tiny_encoder, create=False), new)
            counter.write_text(str(steps.count))

        return _run_child(body)

    try:
        assert write(fresh(), None) == 0
        n_steps = int(counter.read_text())
        for kill_at in range(1, n_steps + 1):
            for second in (None, 1 + (kill_at * 3) % n_steps):
                name = fresh()
                assert write(name, kill_at) == KILLED
                if second is not None:
                    assert write(name, second) in (0, KILLED)
                client = QdrantClient(url=server_url)
                store = _open(client, name, tiny_encoder, create=False)
                state = assert_consistent(store, old, new)
                store.repair()
                assert_clean(store, state, old, new)
                client.close()
    finally:
        client = QdrantClient(url=server_url)
        for name in names:
            client.delete_collection(name)
        client.close()


def test_numpy_tokens_round_trip_exactly(tiny_encoder) -> None:
    # The harness compares stored vectors with atol=0: fp16-exact inputs come back bit for bit.
    store = _open(QdrantClient(":memory:"), "exact", tiny_encoder)
    tokens = _unit(9, tiny_encoder.dim, 5)
    store.add_embeddings([""], [np.asarray(tokens)], ids=["x"])
    torch.testing.assert_close(store.get_embeddings(["x"])["x"], tokens, atol=0, rtol=0)
