"""Crash injection: a child process saves and is SIGKILLed before one of its filesystem steps.

Every step of a save is a kill point: each ``os.replace``/``rename``/``unlink``/``rmdir``/``mkdir``,
each ``fsync`` and each file opened for writing. A dry run counts the steps (and finds the one that
commits the save: the rename onto the target); then, for every step ``i``, a fresh copy of the
folder is saved again by a child killed before step ``i``, and the parent loads what is left. Double
crashes kill a first save at step ``i`` and the next save, on what that left, at step ``j``.

The parent must always load a complete save, equal to one of the saves involved and never older than
the last one that committed: never "not found", never a mix.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _saved import random_documents, snapshot
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import IndexNotFoundError
from lateint_plugins.core.index import ExactIndex, load_index
from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex
from lateint_plugins.core.store import LateInteractionStore

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or os.name != "posix", reason="needs fork and SIGKILL")

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _run_child(action: Callable[[], None], kill_at: int | None, log_path: Path | None) -> None:
    """In the forked child: count filesystem steps, SIGKILL before step ``kill_at``, never return."""
    steps: list[str] = []
    real_open = builtins.open

    def step(name: str) -> None:
        steps.append(name)
        if kill_at is not None and len(steps) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(module: Any, name: str, describe: Callable[..., str]) -> None:
        real = getattr(module, name)

        def hooked(*args: Any, **kwargs: Any) -> Any:
            step(f"{name} {describe(*args, **kwargs)}")
            return real(*args, **kwargs)

        setattr(module, name, hooked)

    try:
        wrap(os, "replace", lambda src, dst, **_: f"{src} -> {dst}")
        wrap(os, "rename", lambda src, dst, **_: f"{src} -> {dst}")
        wrap(os, "unlink", lambda path, **_: str(path))
        wrap(os, "rmdir", lambda path, **_: str(path))
        wrap(os, "mkdir", lambda path, *a, **_: str(path))
        # A killed process keeps its writes in the page cache, so fsync changes nothing here (it is for
        # power loss, which this harness cannot simulate): count it as a kill point, skip the slow call.
        os.fsync = lambda fd: step(f"fsync {fd}")

        def hooked_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if any(c in mode for c in "wax+"):
                step(f"open {file}")
            return real_open(file, mode, *args, **kwargs)

        real_os_open = os.open

        def hooked_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & _WRITE_FLAGS:
                step(f"os.open {path}")
            return real_os_open(path, flags, *args, **kwargs)

        builtins.open = hooked_open
        os.open = hooked_os_open  # type: ignore[assignment]
        action()
        if log_path is not None:
            with real_open(log_path, "w") as f:
                json.dump(steps, f)
    except BaseException:
        os._exit(3)
    os._exit(0)


def _fork(action: Callable[[], None], kill_at: int | None = None, log_path: Path | None = None) -> bool:
    """Run ``action`` in a child; True if it was killed, False if it finished."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _run_child(action, kill_at, log_path)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the save failed in the child without being killed"
    return False


def _dry_run(base: Path, scratch: Path, save: Callable[[Path], None], name: str) -> tuple[int, int]:
    """Number of steps of ``save`` on a copy of ``base``, and the step that renames the new folder onto it."""
    _fresh(base, scratch)
    log = scratch.parent / f"{scratch.name}.log"
    assert not _fork(lambda: save(scratch / name), log_path=log)
    steps = json.loads(log.read_text())
    target = str(scratch / name)
    # The last rename onto the target commits (an earlier one may restore a save a crash left behind).
    commit = max(i for i, s in enumerate(steps, 1) if s.startswith("replace ") and s.endswith(f"-> {target}"))
    return len(steps), commit


def _fresh(base: Path, scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(base, scratch, symlinks=True)


def _crash_matrix(
    tmp_path: Path,
    versions: list[Any],
    load: Callable[[Path], Any],
    *,
    double_stride: int = 1,
    second_kills: int = 1000,
    name: str = "saved",
) -> int:
    """Single crashes at every step of saving ``versions[1]`` over ``versions[0]``, then double crashes.

    Returns the number of kill points run.
    """
    v0, v1, v2 = versions
    want = {key: snapshot(v) if not isinstance(v, tuple) else v[1] for key, v in zip("012", versions, strict=True)}

    def save_as(version: Any) -> Callable[[Path], None]:
        thing = version[0] if isinstance(version, tuple) else version
        return lambda path: thing.save(path) if not hasattr(thing, "persist") else thing.persist(path)

    base = tmp_path / "base"
    base.mkdir()
    save_as(v0)(base / name)
    scratch = tmp_path / "scratch"
    n1, commit1 = _dry_run(base, scratch, save_as(v1), name)
    cases = 0
    for i in range(1, n1 + 1):
        _fresh(base, scratch)
        assert _fork(lambda: save_as(v1)(scratch / name), kill_at=i)
        cases += 1
        got = snapshot(load(scratch / name)) if not _is_llama(v1) else _llama_snapshot(load(scratch / name))
        allowed = {want["1"]} if i > commit1 else {want["0"], want["1"]}
        assert got in allowed, f"kill before step {i} of {n1} (commit at {commit1}) loaded another save"

        if (i - 1) % double_stride:
            continue
        # The state this crash left is the base of a second save, killed at each of its steps.
        after_first = tmp_path / "after-first"
        _fresh(base, after_first)
        assert _fork(lambda: save_as(v1)(tmp_path / "after-first" / name), kill_at=i)
        n2, commit2 = _dry_run(after_first, scratch, save_as(v2), name)
        # The second save's kill points, spread evenly (the last step always among them).
        spread = {n2 - k * n2 // min(n2, second_kills) for k in range(min(n2, second_kills))}
        for j in sorted(spread | {commit2 - 1, commit2, commit2 + 1} & set(range(1, n2 + 1))):
            _fresh(after_first, scratch)
            assert _fork(lambda: save_as(v2)(scratch / name), kill_at=j)
            cases += 1
            got = snapshot(load(scratch / name)) if not _is_llama(v2) else _llama_snapshot(load(scratch / name))
            if j > commit2:
                allowed = {want["2"]}
            elif i > commit1:
                allowed = {want["1"], want["2"]}
            else:
                allowed = {want["0"], want["1"], want["2"]}
            assert got in allowed, f"kills before step {i} then step {j} (commits at {commit1}, {commit2})"
        # And a save after all that succeeds and removes every leftover.
        save_as(v2)(scratch / name)
        assert sorted(p.name for p in scratch.iterdir()) == [name]
    return cases


def _is_llama(version: Any) -> bool:
    return isinstance(version, tuple) and hasattr(version[0], "persist")


def _llama_snapshot(retriever: Any) -> Any:
    return (retriever.similarity_top_k, snapshot(retriever.store))


def _exact(n: int, seed: int) -> ExactIndex:
    ids, docs = random_documents(n, seed=seed, prefix=f"s{seed}-")
    index = ExactIndex(device="cpu")
    index.add(ids, docs, [{"seed": seed, "i": i} for i in range(n)])
    index._store()  # consolidate in the parent: the child only writes files
    return index


def test_exact_index_survives_single_and_double_crashes(tmp_path: Path) -> None:
    versions = [_exact(3, 0), _exact(5, 1), _exact(2, 2)]
    versions[1].remove(["s1-4"])
    cases = _crash_matrix(tmp_path, versions, lambda p: load_index(p, device="cpu"), double_stride=2, second_kills=10)
    assert cases > 80  # every single kill point, and ten second kill points after every other one


def _plaid(n: int, seed: int, codec: Any = None) -> PLAIDIndex:
    ids, docs = random_documents(n, seed=seed, prefix=f"s{seed}-")
    index = PLAIDIndex(config=PLAIDConfig(n_centroids=4, kmeans_niters=1), codec=codec, device="cpu")
    index.add(ids, docs)
    index.remove(ids[:1])
    index.compact()
    index._ivf_lists()  # build in the parent: the child only writes files
    return index


def test_plaid_index_survives_single_and_double_crashes(tmp_path: Path) -> None:
    first = _plaid(20, 0)
    versions = [first, _plaid(12, 1, first.codec), _plaid(9, 2, first.codec)]
    cases = _crash_matrix(tmp_path, versions, lambda p: load_index(p, device="cpu"), double_stride=4, second_kills=8)
    assert cases > 40


def _store(encoder: ColBERTEncoder, n: int, seed: int) -> LateInteractionStore:
    store = LateInteractionStore(encoder, ExactIndex(device="cpu"))
    ids, docs = random_documents(n, seed=seed, prefix=f"s{seed}-")
    store.add_embeddings([f"text of {i}" for i in ids], docs, ids=ids)
    store.index._store()  # type: ignore[attr-defined]
    return store


def test_store_survives_single_and_double_crashes(tmp_path: Path, tiny_encoder: ColBERTEncoder) -> None:
    versions = [_store(tiny_encoder, 2, 0), _store(tiny_encoder, 4, 1), _store(tiny_encoder, 3, 2)]
    cases = _crash_matrix(
        tmp_path,
        versions,
        lambda p: LateInteractionStore.load(p, encoder=tiny_encoder),
        double_stride=6,
        second_kills=8,
    )
    assert cases > 80


def test_llama_index_persist_survives_crashes(tmp_path: Path, tiny_encoder: ColBERTEncoder) -> None:
    llama = pytest.importorskip("lateint_plugins.llama_index")
    versions = [
        (
            retriever := llama.LateInteractionRetriever(_store(tiny_encoder, 2, seed), similarity_top_k=seed + 1),
            _llama_snapshot(retriever),
        )
        for seed in range(3)
    ]
    cases = _crash_matrix(
        tmp_path,
        versions,
        lambda p: llama.LateInteractionRetriever.from_persist_dir(p, encoder=tiny_encoder),
        double_stride=10,
        second_kills=6,
    )
    assert cases > 60


def test_a_first_save_killed_anywhere_leaves_nothing_or_the_save(tmp_path: Path) -> None:
    index = _exact(4, 1)
    (tmp_path / "base").mkdir()
    scratch = tmp_path / "scratch"
    n, commit = _dry_run(tmp_path / "base", scratch, index.save, "i")
    for i in range(1, n + 1):
        _fresh(tmp_path / "base", scratch)
        assert _fork(lambda: index.save(scratch / "i"), kill_at=i)
        try:
            loaded = load_index(scratch / "i")
        except IndexNotFoundError:
            assert i <= commit, f"kill before step {i}: the committed save was lost"
            continue
        assert snapshot(loaded) == snapshot(index)


def test_fork_harness_really_kills(tmp_path: Path) -> None:
    """The harness itself: a kill before step 1 leaves nothing, a run without a kill finishes."""
    index = _exact(2, 0)
    assert _fork(lambda: index.save(tmp_path / "i"), kill_at=1)
    assert not (tmp_path / "i").exists()
    assert not _fork(lambda: index.save(tmp_path / "i"))
    assert snapshot(load_index(tmp_path / "i")) == snapshot(index)
    assert torch.equal(load_index(tmp_path / "i").embeddings()[0], index.embeddings()[0])  # type: ignore[attr-defined]
