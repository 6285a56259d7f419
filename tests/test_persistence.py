"""Saved folders: empty round trips, checked manifests and arrays, recovery from leftovers, fingerprints, check."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _saved import random_documents, reseal, snapshot
from click.testing import CliRunner
from lateint_plugins.core import _io
from lateint_plugins.core.cli import main
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import (
    CorruptIndexError,
    IndexNotFoundError,
    ModelLoadError,
    ModelMismatchError,
)
from lateint_plugins.core.index import ExactIndex, load_index
from lateint_plugins.core.plaid import PLAIDConfig, PLAIDIndex
from lateint_plugins.core.store import LateInteractionStore

TEXTS = ["Cats purr.", "Rockets reach orbit.", "Bread rises with yeast.", "Rain falls on the plain."]


def _plaid(n: int = 40, **config: object) -> PLAIDIndex:
    ids, docs = random_documents(n)
    index = PLAIDIndex(config=PLAIDConfig(n_centroids=8, kmeans_niters=2, **config), device="cpu")  # type: ignore[arg-type]
    index.add(ids, docs, [{"n": i} for i in range(n)])
    return index


def _exact(n: int = 12) -> ExactIndex:
    ids, docs = random_documents(n)
    index = ExactIndex(device="cpu")
    index.add(ids, docs, [{"n": i} for i in range(n)])
    return index


def _sealed(manifest: dict) -> dict:
    return {**manifest, "checksum": _io._manifest_checksum(manifest)}


def rewrite_header(path: Path, **changes: object) -> None:
    """Rewrite the header of an ``.npy`` file (descr, fortran_order, shape), keeping its data bytes."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        assert version == (1, 0)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        data = f.read()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": shape, **changes}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(data)


# ---------------------------------------------------------------------- empty folders round-trip
@pytest.mark.parametrize("make", ["exact", "exact-emptied", "plaid", "plaid-emptied"])
def test_empty_indexes_save_and_load(make: str, tmp_path: Path) -> None:
    if make == "exact":
        index: ExactIndex | PLAIDIndex = ExactIndex(device="cpu")
    elif make == "plaid":
        index = PLAIDIndex(device="cpu")
    else:
        index = _exact() if make == "exact-emptied" else _plaid()
        index.remove(index.ids)
    index.save(tmp_path / "i")
    loaded = load_index(tmp_path / "i", device="cpu")
    assert type(loaded) is type(index) and len(loaded) == 0 and loaded.dim == index.dim
    assert snapshot(loaded) == snapshot(index)
    assert loaded.search(torch.randn(4, 16), k=3) == []
    ids, docs = random_documents(30, seed=5)
    loaded.add(ids, docs)  # still usable: an emptied PLAID index keeps its codec
    assert loaded.search(docs[0], k=1)[0].id == ids[0]


@pytest.mark.parametrize("kind", ["exact", "plaid"])
def test_empty_store_saves_and_loads(kind: str, tmp_path: Path, tiny_encoder: ColBERTEncoder) -> None:
    store = LateInteractionStore(
        tiny_encoder, ExactIndex(device="cpu") if kind == "exact" else PLAIDIndex(device="cpu")
    )
    store.save(tmp_path / "s")
    loaded = LateInteractionStore.load(tmp_path / "s", encoder=tiny_encoder)
    assert len(loaded) == 0 and loaded.search("anything", k=3) == []
    loaded.add_texts(TEXTS, ids=["a", "b", "c", "d"])
    assert {r.id for r in loaded.search("cats purr", k=4)} == {"a", "b", "c", "d"}


def test_empty_llama_index_persist_round_trips(tmp_path: Path, tiny_encoder: ColBERTEncoder) -> None:
    llama = pytest.importorskip("lateint_plugins.llama_index")
    retriever = llama.LateInteractionRetriever(LateInteractionStore(tiny_encoder), similarity_top_k=2)
    retriever.persist(tmp_path / "r")
    loaded = llama.LateInteractionRetriever.from_persist_dir(tmp_path / "r", encoder=tiny_encoder)
    assert loaded.similarity_top_k == 2 and loaded.retrieve("anything") == []


def test_cli_indexes_an_empty_file_and_searches_it(tmp_path: Path, tiny_pylate_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    runner = CliRunner()
    result = runner.invoke(
        main, ["index", str(tmp_path / "empty.jsonl"), str(tmp_path / "s"), "--model", str(tiny_pylate_path)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["search", str(tmp_path / "s"), "cats"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "0 results (the store is empty)"
    result = runner.invoke(main, ["check", str(tmp_path / "s")])
    assert result.exit_code == 0 and result.output.startswith("OK"), result.output


# ---------------------------------------------------------------------- manifests: typed schema, checksums
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: [m], r"manifest\.json must hold a JSON object, got list"),
        (lambda m: 3, r"manifest\.json must hold a JSON object, got int"),
        (lambda m: {**m, "n_documents": "12"}, r"manifest\.json: field 'n_documents' must be int"),
        (lambda m: {**m, "dim": True}, r"manifest\.json: field 'dim' must be int"),
        (lambda m: {k: v for k, v in m.items() if k != "n_tokens"}, r"manifest\.json: field 'n_tokens' is missing"),
        (lambda m: {**m, "n_tokens": -1}, r"field 'n_tokens' must be int >= 0"),
        (lambda m: {**m, "files": []}, r"field 'files' must be dict"),
        (lambda m: {**m, "dtype": "float16 "}, r"checksum"),
        (lambda m: _sealed({**m, "files": {"../x": {"size": 1, "sha256": "0" * 64}}}), r"unsafe path"),
        (lambda m: _sealed({**m, "files": {"tokens.npy": {"size": "1"}}}), r"malformed entry for 'tokens.npy'"),
        (lambda m: _sealed({**m, "files": {}}), r"tokens.npy is not listed"),
    ],
)
def test_manifest_damage_names_file_and_field(edit, match: str, tmp_path: Path) -> None:
    _exact().save(tmp_path / "i")
    path = tmp_path / "i" / "manifest.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(CorruptIndexError, match=match):
        load_index(tmp_path / "i")


def test_a_flipped_byte_anywhere_is_caught_by_the_checksums(tmp_path: Path) -> None:
    index = _exact()
    index.save(tmp_path / "i")
    tokens = tmp_path / "i" / "tokens.npy"
    data = bytearray(tokens.read_bytes())
    data[-3] ^= 0x01  # a valid float16 that differs slightly: only a checksum can tell
    tokens.write_bytes(bytes(data))
    with pytest.raises(CorruptIndexError, match=r"tokens\.npy does not match its sha256"):
        load_index(tmp_path / "i")


def test_npy_headers_are_checked_before_reading(tmp_path: Path) -> None:
    for changes, match in [
        ({"shape": (10**12, 16)}, r"shape \(1000000000000, 16\)"),
        ({"descr": "<f4"}, r"dtype float32 \(expected float16\)"),
        ({"descr": ">f2"}, r"dtype >f2"),
        ({"fortran_order": True}, r"Fortran order"),
    ]:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        _exact().save(folder)
        rewrite_header(folder / "tokens.npy", **changes)
        reseal(folder)
        with pytest.raises(CorruptIndexError, match=match):
            load_index(folder)
    # An array whose header is consistent but whose file is cut short.
    folder = tmp_path / "short"
    _exact().save(folder)
    data = (folder / "tokens.npy").read_bytes()
    (folder / "tokens.npy").write_bytes(data[:-2])
    reseal(folder)
    with pytest.raises(CorruptIndexError, match="header implies"):
        load_index(folder)


def _damage_plaid(folder: Path, name: str) -> None:
    array = np.load(folder / f"{name}.npy").copy()
    if name == "codes":
        array[5] = 8  # one past the last centroid
    elif name == "ivf_slots":
        array[-1] = 10_000
    elif name == "ivf_offsets":
        array[3], array[4] = array[4], array[3] - 1
    elif name == "doc_lengths":
        array[0], array[1] = 0, array[1] + array[0]
    np.save(folder / f"{name}.npy", array)
    reseal(folder)


@pytest.mark.parametrize("name", ["codes", "ivf_slots", "ivf_offsets", "doc_lengths"])
def test_damaged_plaid_arrays_fail_at_load_not_at_search(name: str, tmp_path: Path) -> None:
    _plaid().save(tmp_path / "p")
    _damage_plaid(tmp_path / "p", name)
    with pytest.raises(CorruptIndexError, match=name):
        load_index(tmp_path / "p", device="cpu")


def test_links_inside_saved_folders_are_refused(tmp_path: Path) -> None:
    _exact().save(tmp_path / "i")
    tokens = tmp_path / "i" / "tokens.npy"
    shutil.copy(tokens, tmp_path / "elsewhere.npy")
    tokens.unlink()
    tokens.symlink_to(tmp_path / "elsewhere.npy")
    with pytest.raises(CorruptIndexError, match="link"):
        load_index(tmp_path / "i")


def test_malformed_jsonl_rows_name_file_and_line(tmp_path: Path, tiny_encoder: ColBERTEncoder) -> None:
    store = LateInteractionStore(tiny_encoder)
    store.add_texts(TEXTS, ids=["a", "b", "c", "d"])
    store.save(tmp_path / "s")
    texts = tmp_path / "s" / "texts.jsonl"
    lines = texts.read_text().splitlines()
    for bad, match in [
        ('{"id": "b"}', r"texts\.jsonl:2: field 'text' is missing"),
        ("[1]", r"texts\.jsonl:2 must be"),
        ('{"id": "b", "text": 5}', r"texts\.jsonl:2: field 'text' must be str"),
        ("{", r"texts\.jsonl:2 is not valid"),
    ]:
        texts.write_text("\n".join([lines[0], bad, *lines[2:]]) + "\n")
        reseal(tmp_path / "s")
        with pytest.raises(CorruptIndexError, match=match):
            LateInteractionStore.load(tmp_path / "s", encoder=tiny_encoder)
    documents = tmp_path / "s" / "index" / "documents.jsonl"
    rows = documents.read_text().splitlines()
    documents.write_text("\n".join([*rows[:3], '{"id": 7, "metadata": {}}']) + "\n")
    reseal(tmp_path / "s" / "index")
    with pytest.raises(CorruptIndexError, match=r"documents\.jsonl:4: field 'id' must be str"):
        LateInteractionStore.load(tmp_path / "s", encoder=tiny_encoder)


# ---------------------------------------------------------------------- recovery from interrupted saves
def test_double_crash_leftovers_restore_the_newest_complete_save(tmp_path: Path, caplog) -> None:
    """Cause 1: one save killed while deleting its old folder, the next killed between its two renames."""
    v1, v2 = _exact(5), _exact(9)
    target = tmp_path / "i"
    v1.save(tmp_path / "v1")
    v2.save(target)
    # The older save, half deleted but still with its manifest (the old rmtree order could leave this).
    half = tmp_path / ".i.old-aaaaaaaa"
    shutil.copytree(tmp_path / "v1", half)
    (half / "tokens.npy").unlink()
    os.utime(half / "manifest.json", ns=(2**62, 2**62))  # newest by mtime: the old recovery's pick
    os.replace(target, tmp_path / ".i.old-bbbbbbbb")
    with caplog.at_level(logging.WARNING):
        loaded = load_index(target)
    assert snapshot(loaded) == snapshot(v2)
    assert "Restoring" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i", "v1"]


def test_a_complete_save_that_missed_its_rename_is_restored(tmp_path: Path) -> None:
    v1, v2 = _exact(5), _exact(9)
    target = tmp_path / "i"
    v1.save(target)
    v2.save(tmp_path / "new")
    os.replace(target, tmp_path / ".i.old-11111111")
    os.replace(tmp_path / "new", tmp_path / ".i.tmp-22222222")
    (tmp_path / ".i.tmp-33333333").mkdir()  # an incomplete save: never chosen, cleaned up
    (tmp_path / ".i.tmp-33333333" / "documents.jsonl").write_text("")
    assert snapshot(load_index(target)) == snapshot(v2)
    assert [p.name for p in tmp_path.iterdir()] == ["i"]


def test_no_complete_leftover_means_not_found(tmp_path: Path) -> None:
    _exact().save(tmp_path / "v")
    shutil.copytree(tmp_path / "v", tmp_path / ".i.old-aaaaaaaa")
    (tmp_path / ".i.old-aaaaaaaa" / "lengths.npy").unlink()
    with pytest.raises(IndexNotFoundError):
        load_index(tmp_path / "i")


def test_a_save_cleans_abandoned_leftovers(tmp_path: Path) -> None:
    (tmp_path / ".i.tmp-deadbeef").mkdir()
    (tmp_path / ".i.old-deadbeef").mkdir()
    _exact().save(tmp_path / "i")
    _exact(3).save(tmp_path / "i")
    assert [p.name for p in tmp_path.iterdir()] == ["i"]


# ---------------------------------------------------------------------- model fingerprints
@pytest.fixture(scope="module")
def other_weights_path(tmp_path_factory: pytest.TempPathFactory, tiny_pylate_path: Path) -> Path:
    """The tiny PyLate model with another projection of the same width: same dim, other vector space."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("other-weights")
    shutil.copytree(tiny_pylate_path, folder, dirs_exist_ok=True)
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(7)) / 32**0.5
    save_file({"linear.weight": weight.contiguous()}, str(folder / "1_Dense" / "model.safetensors"))
    return folder


@pytest.mark.parametrize("kind", ["exact", "plaid"])
def test_store_refuses_another_model(
    kind: str, tmp_path: Path, tiny_encoder: ColBERTEncoder, tiny_pylate_path: Path, other_weights_path: Path
) -> None:
    index = ExactIndex(device="cpu") if kind == "exact" else PLAIDIndex(device="cpu")
    store = LateInteractionStore(tiny_encoder, index)
    store.add_texts(TEXTS * 3, ids=[f"t{i}" for i in range(12)])
    store.save(tmp_path / "s")
    other = ColBERTEncoder.from_pretrained(other_weights_path, device="cpu")
    with pytest.raises(ModelMismatchError, match="weights differ"):
        LateInteractionStore.load(tmp_path / "s", encoder=other)
    with pytest.raises(ModelMismatchError, match="weights differ"):
        LateInteractionStore.load(tmp_path / "s", model=other_weights_path)
    shorter = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", document_length=32)
    with pytest.raises(ModelMismatchError, match="document_length 64 vs 32"):
        LateInteractionStore.load(tmp_path / "s", encoder=shorter)
    loaded = LateInteractionStore.load(tmp_path / "s", encoder=other, allow_model_mismatch=True)
    assert len(loaded) == 12
    # The recorded model itself (query-side settings may differ) loads.
    longer_queries = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", query_length=40)
    assert len(LateInteractionStore.load(tmp_path / "s", encoder=longer_queries)) == 12
    assert len(LateInteractionStore.load(tmp_path / "s")) == 12


def test_llama_index_persist_refuses_another_model(
    tmp_path: Path, tiny_encoder: ColBERTEncoder, other_weights_path: Path
) -> None:
    llama = pytest.importorskip("lateint_plugins.llama_index")
    store = LateInteractionStore(tiny_encoder)
    store.add_texts(TEXTS)
    llama.LateInteractionRetriever(store).persist(tmp_path / "r")
    assert "fingerprint" in json.loads((tmp_path / "r" / "manifest.json").read_text())
    other = ColBERTEncoder.from_pretrained(other_weights_path, device="cpu")
    with pytest.raises(ModelMismatchError, match="weights differ"):
        llama.LateInteractionRetriever.from_persist_dir(tmp_path / "r", encoder=other)
    loaded = llama.LateInteractionRetriever.from_persist_dir(tmp_path / "r", encoder=other, allow_model_mismatch=True)
    assert len(loaded.store) == 4


def test_a_moved_model_folder_loads_with_model_override(tmp_path: Path, tiny_pylate_path: Path) -> None:
    first = tmp_path / "models" / "a"
    shutil.copytree(tiny_pylate_path, first)
    store = LateInteractionStore(ColBERTEncoder.from_pretrained(first, device="cpu"))
    store.add_texts(TEXTS, ids=["a", "b", "c", "d"])
    store.save(tmp_path / "s")
    expected = [(r.id, r.score) for r in store.search("cats purr", k=4)]
    moved = tmp_path / "models" / "b"
    os.replace(first, moved)
    with pytest.raises(ModelLoadError, match="LATEINT_MODEL"):
        LateInteractionStore.load(tmp_path / "s")
    loaded = LateInteractionStore.load(tmp_path / "s", model=moved)
    assert [(r.id, r.score) for r in loaded.search("cats purr", k=4)] == expected

    runner = CliRunner()
    result = runner.invoke(main, ["search", str(tmp_path / "s"), "cats purr", "--json"])
    assert result.exit_code == 1 and "--model" in result.output
    for args, env in [(["--model", str(moved)], {}), ([], {"LATEINT_MODEL": str(moved)})]:
        result = runner.invoke(main, ["search", str(tmp_path / "s"), "cats purr", "--json", *args], env=env)
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["id"] for line in result.output.splitlines()] == [i for i, _ in expected]


def test_cli_search_model_mismatch_and_override_flag(
    tmp_path: Path, tiny_encoder: ColBERTEncoder, other_weights_path: Path
) -> None:
    store = LateInteractionStore(tiny_encoder)
    store.add_texts(TEXTS)
    store.save(tmp_path / "s")
    runner = CliRunner()
    result = runner.invoke(main, ["search", str(tmp_path / "s"), "cats", "--model", str(other_weights_path)])
    assert result.exit_code == 1 and "ModelMismatchError" in result.output
    result = runner.invoke(
        main, ["search", str(tmp_path / "s"), "cats", "--model", str(other_weights_path), "--allow-model-mismatch"]
    )
    assert result.exit_code == 0 and len(result.output.splitlines()) == 4, result.output


# ---------------------------------------------------------------------- lateint check
def test_check_reports_ok_or_every_problem(tmp_path: Path, tiny_encoder: ColBERTEncoder) -> None:
    runner = CliRunner()
    store = LateInteractionStore(tiny_encoder, _plaid())
    store._texts = {i: f"text {i}" for i in store.index.ids}
    store.save(tmp_path / "s")
    result = runner.invoke(main, ["check", str(tmp_path / "s")])
    assert result.exit_code == 0 and result.output.startswith("OK:") and "40 documents" in result.output

    # Damage the checksums cannot see (resealed): inverted lists in range and increasing, but wrong.
    slots = np.load(tmp_path / "s" / "index" / "ivf_slots.npy").copy()
    offsets = np.load(tmp_path / "s" / "index" / "ivf_offsets.npy")
    starts = set(offsets.tolist())
    gap = next(i for i in range(len(slots) - 1) if slots[i + 1] - slots[i] > 1 and i + 1 not in starts)
    slots[gap] += 1
    np.save(tmp_path / "s" / "index" / "ivf_slots.npy", slots)
    reseal(tmp_path / "s" / "index")
    result = runner.invoke(main, ["check", str(tmp_path / "s")])
    assert result.exit_code == 1 and "inverted lists do not match" in result.output, result.output

    (tmp_path / "s" / "texts.jsonl").write_text("")
    (tmp_path / "s" / "stray").write_text("")
    result = runner.invoke(main, ["check", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert "PROBLEM: texts.jsonl has 0 bytes" in result.output and "stray is not listed" in result.output
    result = runner.invoke(main, ["check", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "not a saved folder" in result.output


def test_saves_are_durable_and_leave_no_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if Path("/proc/self/fd").is_dir() else str(fd))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    _exact().save(tmp_path / "i")
    _exact(4).save(tmp_path / "i")
    if Path("/proc/self/fd").is_dir():
        assert any(s.endswith("tokens.npy") for s in synced) and str(tmp_path) in synced
    assert [p.name for p in tmp_path.iterdir()] == ["i"]
    assert _io.verify_folder(tmp_path / "i") == []


def test_verifying_a_folder_that_a_save_discards_meanwhile_reports_it_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reader restoring a leftover verifies the folders a concurrent save moved aside; that save may
    # delete one while it is read (seen as a FileNotFoundError in tests/test_race.py on a slow machine).
    _exact().save(tmp_path / "i")

    def vanished(path: Path) -> str:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(_io, "sha256_file", vanished)
    problems = _io.verify_folder(tmp_path / "i")
    assert problems and all("is missing" in p for p in problems)


def test_folders_saved_before_checksums_still_load(tmp_path: Path, tiny_encoder: ColBERTEncoder, caplog) -> None:
    store = LateInteractionStore(tiny_encoder)
    store.add_texts(TEXTS)
    store.save(tmp_path / "s")
    for manifest_path in [tmp_path / "s" / "manifest.json", tmp_path / "s" / "index" / "manifest.json"]:
        manifest = json.loads(manifest_path.read_text())
        for key in ("files", "checksum", "saved_at", "fingerprint"):
            manifest.pop(key, None)
        manifest_path.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        loaded = LateInteractionStore.load(tmp_path / "s", encoder=tiny_encoder)
    assert snapshot(loaded) == snapshot(store)
    assert "records no model fingerprint" in caplog.text
    result = CliRunner().invoke(main, ["check", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output


def test_an_unencodable_string_fails_the_save_with_a_typed_error_and_keeps_the_old_save(tmp_path: Path) -> None:
    from lateint_plugins.core.errors import InvalidInputError

    index = _exact(3)
    index.save(tmp_path / "i")
    index._metadata[1] = {"bad": "\ud800"}  # whatever let it in, the save says which document
    with pytest.raises(InvalidInputError, match="document 'd1'"):
        index.save(tmp_path / "i")
    index._metadata[1] = {"n": 1}
    assert snapshot(load_index(tmp_path / "i")) == snapshot(index)
    assert [p.name for p in tmp_path.iterdir()] == ["i"]


def test_a_load_that_a_save_overtakes_reads_the_new_save(tmp_path: Path) -> None:
    """Paths resolve to whichever folder holds the name: a read that a save overtook is repeated."""
    old, new = _exact(3), _exact(6)
    old.save(tmp_path / "i")
    calls: list[int] = []

    def read(folder: Path) -> ExactIndex:
        calls.append(1)
        manifest = _io.read_manifest(folder, ["exact"])  # the old manifest...
        if len(calls) == 1:
            new.save(tmp_path / "i")  # ...then the folder is replaced before the arrays are read
        assert manifest["kind"] == "exact"
        return ExactIndex._load_folder(folder, {})  # type: ignore[return-value]

    assert snapshot(_io.read_consistently(tmp_path / "i", read)) == snapshot(new)
    assert len(calls) == 2


def test_every_document_setting_is_part_of_the_fingerprint() -> None:
    """Each EncoderConfig field that changes document vectors is compared; only query-side ones may differ."""
    from dataclasses import fields

    from lateint_plugins.core.encoder import EncoderConfig
    from lateint_plugins.core.fingerprint import DOCUMENT_FIELDS

    query_side = {"query_prefix", "query_prompt", "query_length", "do_query_expansion", "attend_to_expansion_tokens"}
    assert {f.name for f in fields(EncoderConfig)} - query_side == set(DOCUMENT_FIELDS)
