"""ColBERTEncoder: checkpoint layouts, framing, [MASK] expansion, skiplist, windows, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from lateint_plugins.core.encoder import ColBERTEncoder, EncoderConfig
from lateint_plugins.core.errors import InvalidInputError, ModelLoadError


def manual_vectors(folder: Path, ids: list[int], attended: int, linear: torch.Tensor | None) -> torch.Tensor:
    """Backbone -> optional projection -> L2 norm, computed directly with transformers."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        mask = torch.zeros(1, len(ids), dtype=torch.long)
        mask[0, :attended] = 1
        hidden = model(input_ids=torch.tensor([ids]), attention_mask=mask).last_hidden_state[0]
    out = hidden @ linear.T if linear is not None else hidden
    return torch.nn.functional.normalize(out, dim=-1)


def test_pylate_layout_frames_queries_and_projects(
    tiny_encoder: ColBERTEncoder, tiny_pylate_path: Path, tiny_linear: torch.Tensor
) -> None:
    tok = tiny_encoder.tokenizer
    assert tiny_encoder.dim == 16
    assert tiny_encoder.config.query_length == 24 and tiny_encoder.config.document_length == 64
    q = tiny_encoder.encode_queries("the cat sat")
    assert q.shape == (24, 16) and q.dtype == torch.float32
    content = tok("the cat sat", add_special_tokens=False)["input_ids"]
    ids = [tok.cls_token_id, tok.convert_tokens_to_ids("[unused0]"), *content, tok.sep_token_id]
    attended = len(ids)
    ids += [tok.mask_token_id] * (24 - len(ids))
    torch.testing.assert_close(q, manual_vectors(tiny_pylate_path, ids, attended, tiny_linear), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(24))


def test_documents_drop_skiplist_and_padding(
    tiny_encoder: ColBERTEncoder, tiny_pylate_path: Path, tiny_linear: torch.Tensor
) -> None:
    tok = tiny_encoder.tokenizer
    text = "cats, dogs. birds!"
    docs = tiny_encoder.encode_documents([text, "a much longer document about many other different things"])
    content = tok(text, add_special_tokens=False)["input_ids"]
    ids = [tok.cls_token_id, tok.convert_tokens_to_ids("[unused1]"), *content, tok.sep_token_id]
    keep = [t not in {tok.convert_tokens_to_ids(p) for p in ",.!"} for t in ids]
    expected = manual_vectors(tiny_pylate_path, ids, len(ids), tiny_linear)[torch.tensor(keep)]
    assert docs[0].shape == (len(ids) - 3, 16)  # three punctuation tokens dropped
    torch.testing.assert_close(docs[0], expected, atol=1e-5, rtol=1e-4)


def test_batching_and_order_do_not_change_outputs(tiny_encoder: ColBERTEncoder) -> None:
    texts = ["short", "a somewhat longer text here", "mid length text", "x y z w v u t s r q p o n m"]
    one_by_one = [tiny_encoder.encode_documents(t) for t in texts]
    batched = tiny_encoder.encode_documents(texts, batch_size=3)
    reversed_ = tiny_encoder.encode_documents(texts[::-1], batch_size=2)[::-1]
    for a, b, c in zip(one_by_one, batched, reversed_, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-4)


def test_expansion_attention_flag_is_honoured(tiny_pylate_path: Path) -> None:
    def real_tokens(encoder: ColBERTEncoder, length: int) -> torch.Tensor:
        return ColBERTEncoder(
            encoder.backbone,
            encoder.tokenizer,
            encoder.projection,
            EncoderConfig(**{**encoder.config.__dict__, "query_length": length}),
            device="cpu",
        ).encode_queries("hello world")[:5]

    blind = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu")
    attending = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", attend_to_expansion_tokens=True)
    # Not attending to [MASK]: the real tokens do not see how many masks follow.
    torch.testing.assert_close(real_tokens(blind, 12), real_tokens(blind, 40), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(real_tokens(attending, 12), real_tokens(attending, 40), atol=1e-3)
    no_expansion = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", do_query_expansion=False)
    assert no_expansion.encode_queries("hello world").shape[0] == 5  # [CLS] [Q] hello world [SEP]


def test_truncation_window_and_truncate_dim(tiny_pylate_path: Path) -> None:
    encoder = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", document_length=16, window_overlap=4)
    words = " ".join(f"word{i}" for i in range(40))
    n_content = len(encoder.tokenizer(words, add_special_tokens=False)["input_ids"])
    assert n_content > 16
    assert encoder.encode_documents(words).shape[0] == 16
    windowed = encoder.encode_documents(words, long_documents="window")
    assert windowed.shape[0] == n_content + 3  # every content token once, plus [CLS] [D] [SEP]
    short = "just a few words"
    torch.testing.assert_close(
        encoder.encode_documents(short, long_documents="window"), encoder.encode_documents(short)
    )
    # The first window's vectors are the truncated encoding's, up to where the overlap begins.
    truncated = encoder.encode_documents(words)
    torch.testing.assert_close(windowed[:10], truncated[:10], atol=1e-5, rtol=1e-4)

    small = ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu", truncate_dim=8)
    assert small.dim == 8
    v = small.encode_documents("some text")
    assert v.shape[1] == 8
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(len(v)))


def test_stanford_layout(
    tmp_path: Path, tiny_bert_path: Path, tiny_linear: torch.Tensor, tiny_encoder: ColBERTEncoder
) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "stanford"
    folder.mkdir()
    for item in tiny_bert_path.iterdir():
        if item.name != "model.safetensors":
            shutil.copy(item, folder / item.name)
    state = {f"bert.{k}": v for k, v in load_file(tiny_bert_path / "model.safetensors").items()}
    state["linear.weight"] = tiny_linear.contiguous()
    save_file(state, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["HF_ColBERT"]}))
    (folder / "artifact.metadata").write_text(
        json.dumps(
            {
                "query_token_id": "[unused0]",
                "doc_token_id": "[unused1]",
                "query_maxlen": 24,
                "doc_maxlen": 64,
                "mask_punctuation": True,
                "attend_to_mask_tokens": False,
                "dim": 16,
            }
        )
    )
    stanford = ColBERTEncoder.from_pretrained(folder, device="cpu")
    assert stanford.dim == 16 and stanford.config.query_length == 24 and stanford.config.document_length == 64
    torch.testing.assert_close(stanford.encode_queries("a query"), tiny_encoder.encode_queries("a query"))
    doc = "Stanford, ColBERT. Same weights!"
    assert stanford.encode_documents(doc).shape[0] < len(tiny_encoder.tokenizer(doc)["input_ids"]) + 1


def test_plain_hugging_face_and_sentence_transformers_without_head(tiny_bert_path: Path, minilm_path: Path) -> None:
    plain = ColBERTEncoder.from_pretrained(tiny_bert_path, device="cpu")
    assert plain.dim == 32
    assert plain.encode_queries("q").shape == (32, 32)  # ColBERT defaults: 32 query tokens
    minilm = ColBERTEncoder.from_pretrained(minilm_path, device="cpu")  # real 6-layer BERT, ST layout, no Dense
    assert minilm.dim == 384
    docs = minilm.encode_documents(["Late interaction keeps one vector per token.", "Another one."])
    assert docs[0].shape[1] == 384 and docs[0].shape[0] > docs[1].shape[0]


def test_bad_input_is_rejected(tiny_encoder: ColBERTEncoder, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        tiny_encoder.encode_documents([])
    with pytest.raises(InvalidInputError, match=r"texts\[1\] is empty"):
        tiny_encoder.encode_queries(["fine", "  "])  # empty documents are legal, empty queries are not
    with pytest.raises(InvalidInputError, match=r"texts\[0\] must be a str"):
        tiny_encoder.encode_queries([42])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="batch_size"):
        tiny_encoder.encode_queries(["q"], batch_size=0)
    with pytest.raises(InvalidInputError, match="long_documents"):
        tiny_encoder.encode_documents(["d"], long_documents="chop")  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match="does not exist"):
        ColBERTEncoder.from_pretrained(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="not a model folder"):
        ColBERTEncoder.from_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="local checkpoint folder"):
        ColBERTEncoder.from_pretrained("some-org/some-colbert", local_files_only=True)
    with pytest.raises(InvalidInputError, match="Unknown encoder option"):
        ColBERTEncoder.from_pretrained(tiny_encoder.name_or_path, query_lenght=8)
    with pytest.raises(InvalidInputError, match="query_length"):
        EncoderConfig(query_length=2)
