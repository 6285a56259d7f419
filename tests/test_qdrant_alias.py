"""Re-embedding behind an alias: the copy is complete before the alias moves, and it moves in one request."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("qdrant_client", reason="pip install 'lateint-plugins[qdrant]'")

from lateint_plugins.core import ColBERTEncoder, LateInteractionStore
from lateint_plugins.core.errors import InvalidInputError
from qdrant_client import QdrantClient, models

from lateint_plugins.qdrant import (
    CollectionConfig,
    CollectionMismatchError,
    CollectionNotFoundError,
    PayloadKeys,
    QdrantLateInteractionStore,
)
from lateint_plugins.qdrant_alias import SourceChangedError, collection_behind, reembed_collection

TEXTS = [
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "The Nile flows through Egypt.",
    "Mount Fuji is in Japan.",
    "",
]
IDS = ["paris", "berlin", "nile", "fuji", "empty"]
METAS = [{"country": "FR"}, {"country": "DE", "n": 2}, {}, {"tags": ["a", "b"]}, {"note": None}]


@pytest.fixture(scope="module")
def old_encoder(tiny_bert_path: Path) -> ColBERTEncoder:
    return ColBERTEncoder.from_pretrained(tiny_bert_path, device="cpu")  # 32-d; tiny_encoder is 16-d


@pytest.fixture(params=["memory", "path"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> QdrantClient:
    return QdrantClient(":memory:") if request.param == "memory" else QdrantClient(path=str(tmp_path / "qdrant"))


def _old(client: QdrantClient, encoder: ColBERTEncoder, name: str = "docs_v1") -> QdrantLateInteractionStore:
    # fp16: the test searches in both modes (native rescoring needs the token multivector).
    store = QdrantLateInteractionStore(client, name, encoder, config=CollectionConfig(token_layout="fp16"))
    store.add_texts(TEXTS, METAS, IDS)
    return store


def _alias(client: QdrantClient, alias: str, collection: str) -> None:
    create = models.CreateAlias(collection_name=collection, alias_name=alias)
    client.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(create_alias=create)])


def test_a_store_opened_through_an_alias_reads_and_writes_the_collection(client, tiny_encoder) -> None:
    direct = _old(client, tiny_encoder)
    _alias(client, "docs", "docs_v1")
    via_alias = QdrantLateInteractionStore(client, "docs", tiny_encoder, create=False)
    assert sorted(via_alias.ids()) == sorted(IDS)
    assert via_alias.get(["berlin"]) == direct.get(["berlin"])
    for mode in ("local", "native"):
        got = QdrantLateInteractionStore(client, "docs", tiny_encoder, mode=mode).search("capital city", k=3)
        want = QdrantLateInteractionStore(client, "docs_v1", tiny_encoder, mode=mode).search("capital city", k=3)
        assert [(r.id, r.score) for r in got] == [(r.id, r.score) for r in want]
    assert [r.id for r in via_alias.search("capital", k=5, filter={"country": "DE"})] == ["berlin"]
    via_alias.add_texts(["Rome is in Italy."], ids=["rome"])
    via_alias.delete(["nile"])
    assert sorted(direct.ids()) == sorted(["paris", "berlin", "fuji", "empty", "rome"])


def test_first_run_copies_every_document_with_the_new_encoder_and_creates_the_alias(
    client, old_encoder, tiny_encoder
) -> None:
    _old(client, old_encoder)
    name = reembed_collection(
        client, "docs", tiny_encoder, source="docs_v1", new_collection="docs_v2", batch_size=2, read_batch_size=2
    )
    assert name == "docs_v2"
    assert collection_behind(client, "docs") == "docs_v2"
    store = QdrantLateInteractionStore(client, "docs", tiny_encoder, create=False)
    assert sorted(store.ids()) == sorted(IDS)
    assert store.get(IDS) == QdrantLateInteractionStore(client, "docs_v1", old_encoder).get(IDS)
    reference = LateInteractionStore(tiny_encoder)
    reference.add_texts(TEXTS, METAS, IDS)
    got, want = store.search("capital of France", k=5), reference.search("capital of France", k=5)
    assert [r.id for r in got] == [r.id for r in want]
    assert [r.score for r in got] == pytest.approx([r.score for r in want], rel=1e-3)
    assert client.collection_exists("docs_v1")  # kept for a roll-back
    assert len(QdrantLateInteractionStore(client, "docs_v1", old_encoder)) == len(IDS)


def test_the_alias_moves_only_after_the_copy_and_in_one_request(client, old_encoder, tiny_encoder, monkeypatch) -> None:
    _old(client, tiny_encoder)
    _alias(client, "docs", "docs_v1")
    seen_during_copy: list[str | None] = []
    add_texts = QdrantLateInteractionStore.add_texts

    def spying_add_texts(self, *args, **kwargs):
        seen_during_copy.append(collection_behind(client, "docs"))
        return add_texts(self, *args, **kwargs)

    monkeypatch.setattr(QdrantLateInteractionStore, "add_texts", spying_add_texts)
    requests: list[list] = []
    update = client.update_collection_aliases

    def spying_update(change_aliases_operations, **kwargs):
        requests.append(list(change_aliases_operations))
        return update(change_aliases_operations=change_aliases_operations, **kwargs)

    monkeypatch.setattr(client, "update_collection_aliases", spying_update)
    name = reembed_collection(client, "docs", old_encoder, read_batch_size=2)
    assert name.startswith("docs-") and name != "docs_v1"
    assert seen_during_copy == ["docs_v1"] * 3  # 5 documents, 2 per read: readers saw the old collection
    assert len(requests) == 1
    delete, create = requests[0]
    assert isinstance(delete, models.DeleteAliasOperation) and delete.delete_alias.alias_name == "docs"
    assert isinstance(create, models.CreateAliasOperation)
    assert (create.create_alias.alias_name, create.create_alias.collection_name) == ("docs", name)
    assert collection_behind(client, "docs") == name
    assert sorted(QdrantLateInteractionStore(client, "docs", old_encoder).ids()) == sorted(IDS)


def test_drop_old_deletes_the_source_after_the_swap(client, tiny_encoder) -> None:
    _old(client, tiny_encoder)
    _alias(client, "docs", "docs_v1")
    name = reembed_collection(client, "docs", tiny_encoder, new_collection="docs_v2", drop_old=True)
    assert not client.collection_exists("docs_v1")
    assert collection_behind(client, "docs") == name == "docs_v2"
    assert len(QdrantLateInteractionStore(client, "docs", tiny_encoder)) == len(IDS)


def test_a_source_changed_during_the_copy_leaves_the_alias_and_a_rerun_catches_up(
    client, tiny_encoder, monkeypatch
) -> None:
    source = _old(client, tiny_encoder)
    _alias(client, "docs", "docs_v1")
    add_texts = QdrantLateInteractionStore.add_texts
    calls = []

    def deleting_add_texts(self, *args, **kwargs):
        result = add_texts(self, *args, **kwargs)
        if not calls:
            source.delete(["fuji"])  # another writer, while the first page is being copied
        calls.append(1)
        return result

    monkeypatch.setattr(QdrantLateInteractionStore, "add_texts", deleting_add_texts)
    with pytest.raises(SourceChangedError, match="new_collection='docs_v2'"):
        reembed_collection(client, "docs", tiny_encoder, new_collection="docs_v2", read_batch_size=10)
    assert collection_behind(client, "docs") == "docs_v1"
    assert "fuji" in QdrantLateInteractionStore(client, "docs_v2", tiny_encoder)  # copied before the delete

    assert reembed_collection(client, "docs", tiny_encoder, new_collection="docs_v2") == "docs_v2"
    assert sorted(QdrantLateInteractionStore(client, "docs", tiny_encoder).ids()) == sorted(set(IDS) - {"fuji"})


def test_a_collection_name_cannot_become_the_alias(tiny_encoder) -> None:
    client = QdrantClient(":memory:")
    _old(client, tiny_encoder)
    with pytest.raises(InvalidInputError, match=r"alias='docs_v1' is a collection.*source='docs_v1'"):
        reembed_collection(client, "docs_v1", tiny_encoder)
    assert [c.name for c in client.get_collections().collections] == ["docs_v1"]


def test_missing_or_foreign_sources_and_bad_arguments_raise_before_writing(tiny_encoder) -> None:
    client = QdrantClient(":memory:")
    with pytest.raises(CollectionNotFoundError, match="pass source="):
        reembed_collection(client, "docs", tiny_encoder)
    with pytest.raises(CollectionNotFoundError, match="'nope'"):
        reembed_collection(client, "docs", tiny_encoder, source="nope")
    client.create_collection("foreign", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    with pytest.raises(CollectionMismatchError, match="not written by lateint-plugins"):
        reembed_collection(client, "docs", tiny_encoder, source="foreign")
    _old(client, tiny_encoder)
    _alias(client, "docs", "docs_v1")
    with pytest.raises(InvalidInputError, match="points to 'docs_v1'"):
        reembed_collection(client, "docs", tiny_encoder, source="foreign")
    for bad in ({"new_collection": "docs_v1"}, {"new_collection": "docs"}, {"batch_size": 0}, {"config": {}}):
        with pytest.raises(InvalidInputError):
            reembed_collection(client, "docs", tiny_encoder, **bad)
    assert sorted(c.name for c in client.get_collections().collections) == ["docs_v1", "foreign"]
    assert collection_behind(client, "docs") == "docs_v1"


def test_the_copy_keeps_the_source_layout_its_payload_keys_included(client, old_encoder, tiny_encoder) -> None:
    config = CollectionConfig(
        payload_keys=PayloadKeys(text="body", metadata="meta"), payload_indexes={"country": "keyword"}
    )
    QdrantLateInteractionStore(client, "docs_v1", old_encoder, config=config).add_texts(TEXTS, METAS, IDS)
    reembed_collection(client, "docs", tiny_encoder, source="docs_v1", new_collection="docs_v2")
    copied = QdrantLateInteractionStore(client, "docs", tiny_encoder, create=False)
    assert copied.config.payload_keys == config.payload_keys
    assert dict(copied.config.payload_indexes) == {"country": "keyword"}
    assert [(r.id, r.text, r.metadata) for r in copied.get(IDS)] == [
        (i, t, m) for i, t, m in zip(IDS, TEXTS, METAS, strict=True)
    ]
