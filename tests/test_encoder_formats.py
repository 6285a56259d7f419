"""Checkpoint formats: each mismatch of issue 11 as a regression test on tiny random-weight folders.

Every folder here is written the way its library saves it (PyLate <= 1.6, sentence-transformers 6
``MultiVectorEncoder``, Stanford colbert-ai ``HF_ColBERT``), with hidden size 32, 2 layers and either
the real MiniLM WordPiece tokenizer or small tokenizers trained offline with ``tokenizers``. Expected
vectors are computed directly with transformers from the ids each reference library would feed.
"""

from __future__ import annotations

import json
import logging
import shutil
import string
from pathlib import Path
from typing import Any

import pytest
import torch
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import InvalidInputError, MissingDependencyError, ModelLoadError

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Late interaction keeps one vector per token!",
    "Cats, dogs and birds: $5 each?",
    "ColBERT encodes queries and documents (separately).",
    "Numbers like 42 and 3.14 appear; so do symbols # and %.",
]
PYLATE_DENSE = "pylate.models.Dense.Dense"
ST_TRANSFORMER = "sentence_transformers.models.Transformer"


# ---------------------------------------------------------------------- tiny folders
def _xlmr_tokenizer() -> Any:
    """A sentencepiece-style ("▁") Unigram vocabulary with XLM-R's <s> </s> <pad> <unk> <mask>."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=200, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(TEXTS * 20, trainer)
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def _bpe_tokenizer() -> Any:
    """A byte-level BPE vocabulary framed [CLS] ... [SEP], without token_type_ids (ModernBERT style)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXTS * 20, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
    )


def _save_backbone(folder: Path, family: str, tokenizer: Any, extra_tokens: list[str] = ()) -> None:
    """Random 2-layer, hidden-32 backbone of ``family`` sized to ``tokenizer`` (plus ``extra_tokens``, added
    as PyLate adds its markers), saved with its tokenizer in ``folder``."""
    from transformers import BertConfig, BertModel, ModernBertConfig, ModernBertModel, XLMRobertaConfig, XLMRobertaModel

    if extra_tokens:
        tokenizer.add_tokens(list(extra_tokens))
    torch.manual_seed(0)
    shared = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    if family == "bert":
        model = BertModel(BertConfig(vocab_size=len(tokenizer), max_position_embeddings=128, **shared))
    elif family == "xlmr":
        config = XLMRobertaConfig(
            vocab_size=len(tokenizer),
            max_position_embeddings=130,
            type_vocab_size=1,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            **shared,
        )
        model = XLMRobertaModel(config)
    else:
        config = ModernBertConfig(
            vocab_size=len(tokenizer),
            max_position_embeddings=128,
            pad_token_id=tokenizer.pad_token_id,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            global_attn_every_n_layers=1,
            **shared,
        )
        model = ModernBertModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _write_dense(folder: Path, weights: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))


def _pylate_folder(folder: Path, *, query_prefix: str, document_prefix: str, **config: Any) -> None:
    """What PyLate 1.6 on sentence-transformers 5 writes next to a saved backbone."""
    generator = torch.Generator().manual_seed(3)
    _write_dense(
        folder / "1_Dense",
        {"linear.weight": torch.randn(16, 32, generator=generator) / 32**0.5},
        {
            "in_features": 32,
            "out_features": 16,
            "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity",
            "use_residual": False,
        },
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": ST_TRANSFORMER},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": PYLATE_DENSE},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 299, "do_lower_case": False}))
    st_config = {
        "__version__": {"sentence_transformers": "5.3.0", "pylate": "1.6.0"},
        "model_type": "ColBERT",
        "prompts": {"query": "", "document": ""},  # sentence-transformers 5.x's default, the issue-11 bug
        "default_prompt_name": None,
        "similarity_fn_name": "MaxSim",
        "query_prefix": query_prefix,
        "document_prefix": document_prefix,
        "query_length": 16,
        "document_length": 40,
        "attend_to_expansion_tokens": False,
        "skiplist_words": list(string.punctuation),
        "do_query_expansion": True,
        **config,
    }
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config))


def _stanford_folder(folder: Path, backbone_prefix: str, heads: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """colbert-ai's HF_ColBERT save: backbone keys under ``<prefix>.``, heads at the top level."""
    from safetensors.torch import load_file, save_file

    state = {f"{backbone_prefix}.{k}": v for k, v in load_file(folder / "model.safetensors").items()}
    state.update(heads)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["HF_ColBERT"]}))
    (folder / "artifact.metadata").write_text(json.dumps(meta))


def _expected(
    folder: Path, ids: list[int], attended: int, head: torch.nn.Module | torch.Tensor | None = None
) -> torch.Tensor:
    """Backbone -> projection -> L2 norm for one framed sequence, straight from transformers."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    mask = torch.zeros(1, len(ids), dtype=torch.long)
    mask[0, :attended] = 1
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids]), attention_mask=mask).last_hidden_state[0]
        out = hidden @ head.T if isinstance(head, torch.Tensor) else (head(hidden) if head is not None else hidden)
    return torch.nn.functional.normalize(out, dim=-1)


def _dense_head(folder: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(folder / "1_Dense" / "model.safetensors")["linear.weight"]


@pytest.fixture(scope="module")
def bert_pylate(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path) -> Path:
    folder = tmp_path_factory.mktemp("bert-pylate")
    shutil.copytree(tiny_bert_path, folder, dirs_exist_ok=True)
    _pylate_folder(folder, query_prefix="[unused0]", document_prefix="[unused1]")
    return folder


@pytest.fixture(scope="module")
def modernbert_pylate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GTE-ModernColBERT layout: ModernBERT + BPE, "[Q] "/"[D] " added as new tokens by PyLate."""
    folder = tmp_path_factory.mktemp("modernbert-pylate")
    _save_backbone(folder, "modernbert", _bpe_tokenizer(), extra_tokens=["[Q] ", "[D] "])
    _pylate_folder(folder, query_prefix="[Q] ", document_prefix="[D] ")
    return folder


@pytest.fixture(scope="module")
def xlmr_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("xlmr")
    _save_backbone(folder, "xlmr", _xlmr_tokenizer(), extra_tokens=["[QueryMarker]", "[DocumentMarker]"])
    return folder


# ---------------------------------------------------------------------- PyLate
def test_empty_sentence_transformers_prompts_do_not_erase_pylate_markers(bert_pylate: Path) -> None:
    encoder = ColBERTEncoder.from_pretrained(bert_pylate, device="cpu")
    tok = encoder.tokenizer
    assert encoder.checkpoint_format == "pylate"
    assert (encoder.config.query_prefix, encoder.config.query_prompt) == ("[unused0]", "")
    content = tok("the cat sat", add_special_tokens=False)["input_ids"]
    ids = [tok.cls_token_id, tok.convert_tokens_to_ids("[unused0]"), *content, tok.sep_token_id]
    expected = _expected(
        bert_pylate, [*ids, *[tok.mask_token_id] * (16 - len(ids))], len(ids), _dense_head(bert_pylate)
    )
    torch.testing.assert_close(encoder.encode_queries("the cat sat"), expected, atol=1e-5, rtol=1e-4)
    doc_ids = [tok.cls_token_id, tok.convert_tokens_to_ids("[unused1]"), *content, tok.sep_token_id]
    torch.testing.assert_close(
        encoder.encode_documents("  the cat sat "),  # PyLate strips texts (sentence-transformers 5 tokenize)
        _expected(bert_pylate, doc_ids, len(doc_ids), _dense_head(bert_pylate)),
        atol=1e-5,
        rtol=1e-4,
    )


def test_pylate_default_prompt_is_text_before_both_roles(bert_pylate: Path, tmp_path: Path) -> None:
    folder = tmp_path / "prompted"
    shutil.copytree(bert_pylate, folder)
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    config.update(prompts={"query": "", "search": "search: "}, default_prompt_name="search")
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config))
    encoder = ColBERTEncoder.from_pretrained(folder, device="cpu")
    assert encoder.config.query_prompt == encoder.config.document_prompt == "search: "
    plain = ColBERTEncoder.from_pretrained(bert_pylate, device="cpu")
    torch.testing.assert_close(encoder.encode_documents("a cat"), plain.encode_documents("search: a cat"))


def test_pylate_markers_are_added_tokens_on_bpe_vocabularies(modernbert_pylate: Path) -> None:
    encoder = ColBERTEncoder.from_pretrained(modernbert_pylate, device="cpu")
    tok = encoder.tokenizer
    q_id, d_id = tok.convert_tokens_to_ids("[Q] "), tok.convert_tokens_to_ids("[D] ")
    assert q_id == len(tok) - 2 and d_id == len(tok) - 1  # the two tokens PyLate appended
    assert encoder._query_prefix_ids == [q_id] and encoder._document_prefix_ids == [d_id]
    assert not encoder._token_type_ids  # ModernBERT takes no token_type_ids
    # Skiplist by convert_tokens_to_ids: "," is one token here, "$" is the byte-level "$".
    assert tok.convert_tokens_to_ids(",") in encoder._skip_ids
    content = tok("Cats, dogs", add_special_tokens=False)["input_ids"]
    ids = [tok.cls_token_id, d_id, *content, tok.sep_token_id]
    keep = [t != tok.convert_tokens_to_ids(",") for t in ids]
    expected = _expected(modernbert_pylate, ids, len(ids), _dense_head(modernbert_pylate))[torch.tensor(keep)]
    torch.testing.assert_close(encoder.encode_documents("Cats, dogs"), expected, atol=1e-5, rtol=1e-4)


def test_pylate_marker_missing_from_the_vocabulary_fails(modernbert_pylate: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"query_prefix='\[unused0\]' is not a token.*untrained"):
        ColBERTEncoder.from_pretrained(modernbert_pylate, device="cpu", query_prefix="[unused0]")


def test_pylate_skiplist_keeps_unk_for_words_outside_the_vocabulary(xlmr_backbone: Path, tmp_path: Path) -> None:
    folder = tmp_path / "xlmr-pylate"
    shutil.copytree(xlmr_backbone, folder)
    _pylate_folder(folder, query_prefix="[QueryMarker]", document_prefix="[DocumentMarker]")
    encoder = ColBERTEncoder.from_pretrained(folder, device="cpu")
    tok = encoder.tokenizer
    missing = [w for w in string.punctuation if tok.convert_tokens_to_ids(w) == tok.unk_token_id]
    assert missing  # this small vocabulary lacks some punctuation marks
    assert tok.unk_token_id in encoder._skip_ids  # PyLate's convert_tokens_to_ids maps them to <unk>
    assert encoder._head == [tok.cls_token_id] and encoder._tail == [tok.sep_token_id]  # <s> ... </s>
    assert not encoder._token_type_ids  # XLM-R's tokenizer produces none


def test_token_type_ids_only_for_models_that_take_them(bert_pylate: Path) -> None:
    encoder = ColBERTEncoder.from_pretrained(bert_pylate, device="cpu")
    assert encoder._token_type_ids  # BERT: zeros, as its tokenizer gives for one sequence


@pytest.mark.parametrize(
    ("dense_configs", "n_features"),
    [
        ([{"bias": True, "activation_function": "torch.nn.modules.activation.Tanh"}, {"use_residual": True}], [24, 24]),
        ([{"use_residual": True}], [16]),  # sizes differ: a bias-free residual projection
        ([{"bias": True}, {"use_residual": True, "bias": True}, {}], [24, 12, 8]),
    ],
)
def test_dense_stacks_with_bias_activation_and_residual(
    tiny_bert_path: Path, tmp_path: Path, dense_configs: list[dict[str, Any]], n_features: list[int]
) -> None:
    folder = tmp_path / "dense"
    shutil.copytree(tiny_bert_path, folder)
    _pylate_folder(folder, query_prefix="[unused0]", document_prefix="[unused1]")
    shutil.rmtree(folder / "1_Dense")
    generator = torch.Generator().manual_seed(7)
    modules = [{"idx": 0, "name": "0", "path": "", "type": ST_TRANSFORMER}]
    layers = []
    width = 32
    for i, (extra, out) in enumerate(zip(dense_configs, n_features, strict=True)):
        config = {
            "in_features": width,
            "out_features": out,
            "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity",
            "use_residual": False,
            **extra,
        }
        weights = {"linear.weight": torch.randn(out, width, generator=generator) / width**0.5}
        if config["bias"]:
            weights["linear.bias"] = torch.randn(out, generator=generator)
        if config["use_residual"] and width != out:
            weights["residual.weight"] = torch.randn(out, width, generator=generator) / width**0.5
        _write_dense(folder / f"{i + 1}_Dense", weights, config)
        modules.append({"idx": i + 1, "name": str(i + 1), "path": f"{i + 1}_Dense", "type": PYLATE_DENSE})
        layers.append((config, weights))
        width = out
    (folder / "modules.json").write_text(json.dumps(modules))

    def head(x: torch.Tensor) -> torch.Tensor:  # PyLate Dense.forward, layer by layer
        for config, weights in layers:
            out = torch.nn.functional.linear(x, weights["linear.weight"], weights.get("linear.bias"))
            if "Tanh" in config["activation_function"]:
                out = torch.tanh(out)
            if config["use_residual"]:
                out = out + (
                    torch.nn.functional.linear(x, weights["residual.weight"]) if "residual.weight" in weights else x
                )
            x = out
        return x

    encoder = ColBERTEncoder.from_pretrained(folder, device="cpu")
    assert encoder.dim == n_features[-1]
    tok = encoder.tokenizer
    content = tok("residual heads", add_special_tokens=False)["input_ids"]
    ids = [tok.cls_token_id, tok.convert_tokens_to_ids("[unused1]"), *content, tok.sep_token_id]
    torch.testing.assert_close(
        encoder.encode_documents("residual heads"), _expected(folder, ids, len(ids), head), atol=1e-5, rtol=1e-4
    )


# ---------------------------------------------------------------------- sentence-transformers 6
def _st6_folder(
    source: Path, folder: Path, *, skiplist: list[str], expansion: dict[str, Any] | None, lower: bool = False
) -> None:
    """What sentence-transformers 6 ``MultiVectorEncoder.save`` writes (Dense, MultiVectorMask, Normalize)."""
    shutil.copytree(source, folder)
    for stale in ("modules.json", "config_sentence_transformers.json", "artifact.metadata"):
        (folder / stale).unlink(missing_ok=True)
    generator = torch.Generator().manual_seed(5)
    _write_dense(
        folder / "1_Dense",
        {"linear.weight": torch.randn(16, 32, generator=generator) / 32**0.5},
        {
            "in_features": 32,
            "out_features": 16,
            "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity",
            "module_input_name": "token_embeddings",
            "module_output_name": "token_embeddings",
        },
    )
    (folder / "2_MultiVectorMask").mkdir()
    (folder / "2_MultiVectorMask" / "config.json").write_text(
        json.dumps({"skiplist_words": skiplist, "skiplist_tasks": ["document"], "keep_only_token_ids": None})
    )
    (folder / "3_Normalize").mkdir()
    (folder / "3_Normalize" / "config.json").write_text(
        json.dumps({"module_input_name": "token_embeddings", "module_output_name": "token_embeddings"})
    )
    base = "sentence_transformers"
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": f"{base}.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": f"{base}.base.modules.dense.Dense"},
        {
            "idx": 2,
            "name": "2",
            "path": "2_MultiVectorMask",
            "type": f"{base}.multi_vector_encoder.modules.multi_vector_mask.MultiVectorMask",
        },
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": f"{base}.base.modules.normalize.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps(
            {
                "transformer_task": "feature-extraction",
                "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
                "module_output_name": "token_embeddings",
                "document_length": 40,
                "query_expansion": expansion,
                "do_lower_case": lower,
            }
        )
    )
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "model_type": "MultiVectorEncoder",
                "__version__": {"sentence_transformers": "6.2.0"},
                "prompts": {"query": "[QueryMarker]", "document": "[DocumentMarker]"},
                "default_prompt_name": None,
                "similarity_fn_name": "maxsim",
            }
        )
    )


def test_sentence_transformers_6_prompts_lengths_expansion_and_skiplist(xlmr_backbone: Path, tmp_path: Path) -> None:
    folder = tmp_path / "st6"
    expansion = {"strategy": "fixed", "attend": True, "token": None, "length": 12}
    _st6_folder(xlmr_backbone, folder, skiplist=[",", "not-a-token"], expansion=expansion)
    encoder = ColBERTEncoder.from_pretrained(folder, device="cpu")
    tok = encoder.tokenizer
    cfg = encoder.config
    assert encoder.checkpoint_format == "sentence-transformers"
    assert (cfg.query_prompt, cfg.query_prefix, cfg.query_length, cfg.document_length) == ("[QueryMarker]", "", 12, 40)
    assert cfg.attend_to_expansion_tokens and cfg.do_query_expansion
    # Words that are not one vocabulary token leave the skiplist (not <unk>, unlike PyLate).
    assert encoder._skip_ids == {tok.convert_tokens_to_ids(",")}
    # The prompt is text: the query is tokenised as one string, then padded with <mask>, all attended.
    ids = tok("[QueryMarker]dogs", add_special_tokens=True)["input_ids"]
    ids += [tok.mask_token_id] * (12 - len(ids))
    from safetensors.torch import load_file

    head = load_file(folder / "1_Dense" / "model.safetensors")["linear.weight"]
    torch.testing.assert_close(encoder.encode_queries("dogs"), _expected(folder, ids, 12, head), atol=1e-5, rtol=1e-4)


def test_sentence_transformers_6_modules_it_cannot_reproduce_fail(xlmr_backbone: Path, tmp_path: Path) -> None:
    folder = tmp_path / "st6-pooled"
    _st6_folder(xlmr_backbone, folder, skiplist=[], expansion=None)
    modules = json.loads((folder / "modules.json").read_text())
    pooling = "sentence_transformers.multi_vector_encoder.modules.token_pooling.TokenPooling"
    modules.insert(2, {"idx": 9, "name": "9", "path": "9_TokenPooling", "type": pooling})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelLoadError, match=r"TokenPooling.*does not implement"):
        ColBERTEncoder.from_pretrained(folder, device="cpu")
    modules.pop(2)
    (folder / "modules.json").write_text(json.dumps(modules))
    dense = json.loads((folder / "1_Dense" / "config.json").read_text())
    (folder / "1_Dense" / "config.json").write_text(json.dumps({**dense, "activation_function": "my.pkg.Swish"}))
    with pytest.raises(ModelLoadError, match=r"Unsupported activation 'my\.pkg\.Swish'"):
        ColBERTEncoder.from_pretrained(folder, device="cpu")


@pytest.mark.parametrize("lower", [False, True])
def test_sentence_transformers_6_matches_multi_vector_encoder(xlmr_backbone: Path, tmp_path: Path, lower: bool) -> None:
    """Oracle check against sentence-transformers 6 itself, when it is installed (it is in [test])."""
    st6 = pytest.importorskip("sentence_transformers.multi_vector_encoder", reason="sentence-transformers 6 absent")
    folder = tmp_path / "st6-oracle"
    expansion = {"strategy": "fixed", "length": 12}
    _st6_folder(xlmr_backbone, folder, skiplist=list(string.punctuation), expansion=expansion, lower=lower)
    reference = st6.MultiVectorEncoder(str(folder), device="cpu")
    ours = ColBERTEncoder.from_pretrained(folder, device="cpu")
    queries, documents = TEXTS[:2], TEXTS[2:]
    expected_q = reference.encode_query(queries)
    expected_d = reference.encode_document(documents)
    for got, want in zip(
        ours.encode_queries(queries) + ours.encode_documents(documents), [*expected_q, *expected_d], strict=True
    ):
        want = torch.as_tensor(want, dtype=torch.float32)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fixture", ["bert_pylate", "modernbert_pylate"])
def test_pylate_folders_agree_with_multi_vector_encoder(fixture: str, request: pytest.FixtureRequest) -> None:
    """sentence-transformers 6 reads PyLate folders too (prefix as a registered special token + text);
    on these folders both libraries frame the same ids, so the vectors agree."""
    st6 = pytest.importorskip("sentence_transformers.multi_vector_encoder", reason="sentence-transformers 6 absent")
    folder = request.getfixturevalue(fixture)
    reference = st6.MultiVectorEncoder(str(folder), device="cpu")
    ours = ColBERTEncoder.from_pretrained(folder, device="cpu")
    got = ours.encode_queries(TEXTS[:2]) + ours.encode_documents(TEXTS[2:])
    want = reference.encode_query(TEXTS[:2]) + reference.encode_document(TEXTS[2:])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, torch.as_tensor(b, dtype=torch.float32), atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------- Stanford colbert-ai
def _stanford_xlmr(xlmr_backbone: Path, tmp_path: Path, heads: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    folder = tmp_path / "stanford-xlmr"
    shutil.copytree(xlmr_backbone, folder)
    _stanford_folder(folder, "roberta", heads, meta)
    return folder


def test_stanford_missing_marker_maps_to_unk_and_skiplist_uses_first_pieces(
    xlmr_backbone: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(2))
    folder = _stanford_xlmr(xlmr_backbone, tmp_path, {"linear.weight": weight}, {"query_maxlen": 12, "dim": 16})
    with caplog.at_level(logging.WARNING, logger="lateint_plugins.core.encoder"):
        encoder = ColBERTEncoder.from_pretrained(folder, device="cpu")
    tok = encoder.tokenizer
    assert encoder.checkpoint_format == "stanford"
    assert encoder.config.document_length == 220  # colbert-ai's doc_maxlen default
    assert encoder._query_prefix_ids == [tok.unk_token_id]  # "[unused0]" is not in this vocabulary
    assert "maps to the unknown token" in caplog.text
    # colbert-ai skips the first piece of each punctuation mark tokenised alone: here "▁".
    first_pieces = {tok(p, add_special_tokens=False)["input_ids"][0] for p in string.punctuation}
    assert tok.convert_tokens_to_ids("▁") in first_pieces
    assert encoder._skip_ids == first_pieces | {tok.pad_token_id}
    text = "Cats, $5"
    content = tok(text, add_special_tokens=False)["input_ids"]
    ids = [tok.cls_token_id, tok.unk_token_id, *content, tok.sep_token_id]
    keep = torch.tensor([t not in first_pieces for t in ids])
    expected = _expected(folder, ids, len(ids), weight)[keep]
    torch.testing.assert_close(encoder.encode_documents(text), expected, atol=1e-5, rtol=1e-4)


def test_jina_colbert_v2_layout_markers_attention_and_matryoshka_heads(xlmr_backbone: Path, tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(4)
    heads = {f"linear_{d}.weight": torch.randn(d, 32, generator=generator) for d in (12, 8)}
    heads["linear.weight"] = torch.randn(16, 32, generator=generator)
    meta = {
        "query_token_id": "[QueryMarker]",
        "doc_token_id": "[DocumentMarker]",
        "query_maxlen": 12,
        "doc_maxlen": 64,
        "attend_to_mask_tokens": True,
        "dim": 16,
    }
    folder = _stanford_xlmr(xlmr_backbone, tmp_path, heads, meta)
    tok = ColBERTEncoder.from_pretrained(folder, device="cpu").tokenizer
    content = tok("dogs", add_special_tokens=False)["input_ids"]
    ids = [tok.cls_token_id, tok.convert_tokens_to_ids("[QueryMarker]"), *content, tok.sep_token_id]
    ids += [tok.mask_token_id] * (12 - len(ids))
    for dim, key in ((None, "linear.weight"), (16, "linear.weight"), (12, "linear_12.weight"), (8, "linear_8.weight")):
        encoder = ColBERTEncoder.from_pretrained(folder, device="cpu", dim=dim)
        assert encoder.dim == heads[key].shape[0]
        expected = _expected(folder, ids, 12, heads[key])  # attends to the expansion tokens
        torch.testing.assert_close(encoder.encode_queries("dogs"), expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(InvalidInputError, match=r"dim=100 matches no projection head.*\[16, 12, 8\]"):
        ColBERTEncoder.from_pretrained(folder, device="cpu", dim=100)


def test_dim_on_a_single_head_checkpoint_points_to_truncate_dim(bert_pylate: Path) -> None:
    assert ColBERTEncoder.from_pretrained(bert_pylate, device="cpu", dim=16).dim == 16
    with pytest.raises(InvalidInputError, match="truncate_dim"):
        ColBERTEncoder.from_pretrained(bert_pylate, device="cpu", dim=8)


# ---------------------------------------------------------------------- custom code, Japanese, Hub
def test_jina_colbert_v1_custom_code_needs_trust_and_says_what_is_missing(tiny_bert_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "jina-v1"
    shutil.copytree(tiny_bert_path, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "jinaai/jina-bert-implementation--configuration_bert.JinaBertConfig",
        "AutoModel": "jinaai/jina-bert-implementation--modeling_bert.JinaBertModel",
    }
    config.update(architectures=["HF_ColBERT"], position_embedding_type="alibi")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "artifact.metadata").write_text(json.dumps({"query_maxlen": 32, "doc_maxlen": 512}))
    with pytest.raises(ModelLoadError, match="trust_remote_code=True"):
        ColBERTEncoder.from_pretrained(folder, device="cpu")  # never silently a plain BERT without ALiBi
    with pytest.raises(ModelLoadError, match=r"jinaai/jina-bert-implementation.*modeling_bert\.py.*HF_MODULES_CACHE"):
        ColBERTEncoder.from_pretrained(folder, device="cpu", trust_remote_code=True)  # offline: code not cached


def _japanese_folder(folder: Path) -> None:
    folder.mkdir()
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "[unused0]",
        "[unused1]",
        "東京",
        "は",
        "日本",
        "の",
        "首都",
        "です",
        "。",
    ]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "BertJapaneseTokenizer",
                "word_tokenizer_type": "mecab",
                "subword_tokenizer_type": "wordpiece",
                "mecab_kwargs": {"mecab_dic": "unidic_lite"},
                "do_lower_case": False,
            }
        )
    )
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).eval().save_pretrained(folder)


def test_japanese_tokenizer_without_its_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    folder = tmp_path / "jacolbert"
    _japanese_folder(folder)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("fugashi", "unidic_lite") else real(name, *a)
    )
    with pytest.raises(MissingDependencyError, match=r"pip install 'lateint-plugins\[ja\]'"):
        ColBERTEncoder.from_pretrained(folder, device="cpu")


def test_japanese_tokenizer_splits_words_with_mecab(tmp_path: Path) -> None:
    pytest.importorskip("fugashi", reason="pip install 'lateint-plugins[ja]'")
    pytest.importorskip("unidic_lite", reason="pip install 'lateint-plugins[ja]'")
    folder = tmp_path / "jacolbert"
    _japanese_folder(folder)
    encoder = ColBERTEncoder.from_pretrained(folder, device="cpu")
    tok = encoder.tokenizer
    assert type(tok).__name__ == "BertJapaneseTokenizer"
    assert tok.tokenize("東京は日本の首都です。") == ["東京", "は", "日本", "の", "首都", "です", "。"]
    assert encoder.encode_documents("東京は日本の首都です。").shape == (1 + 1 + 7 + 1, 32)  # [CLS] [D] 7 words [SEP]


def test_hub_options_reach_snapshot_download_and_revision_is_recorded(
    bert_pylate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--org--tiny" / "snapshots" / sha
    shutil.copytree(bert_pylate, snapshot)
    calls: list[dict[str, Any]] = []

    def fake_snapshot_download(repo_id: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    encoder = ColBERTEncoder.from_pretrained(
        "org/tiny", device="cpu", revision="v1.0", token="hf_x", cache_dir=tmp_path, trust_remote_code=True
    )
    assert encoder.revision == sha and encoder.fingerprint.revision == sha
    assert calls[0]["repo_id"] == "org/tiny"
    assert (calls[0]["revision"], calls[0]["token"], calls[0]["cache_dir"]) == ("v1.0", "hf_x", str(tmp_path))
    assert "*.py" in calls[0]["allow_patterns"]  # trusted modelling code is fetched too
    assert ColBERTEncoder.from_pretrained(snapshot, device="cpu").revision == sha  # a cache folder passed directly
    assert ColBERTEncoder.from_pretrained(bert_pylate, device="cpu").revision is None


# ---------------------------------------------------------------------- long queries
@pytest.mark.parametrize("family", ["pylate", "sentence-transformers", "stanford"])
def test_long_queries_warn_once_and_query_length_raises_the_limit(
    family: str, bert_pylate: Path, xlmr_backbone: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if family == "pylate":
        folder = bert_pylate
    elif family == "sentence-transformers":
        folder = tmp_path / "st6"
        _st6_folder(xlmr_backbone, folder, skiplist=[], expansion={"strategy": "fixed", "length": 12})
    else:
        folder = _stanford_xlmr(xlmr_backbone, tmp_path, {"linear.weight": torch.randn(16, 32)}, {"query_maxlen": 12})
    long_query = " ".join(["dogs and cats"] * 12)
    short = ColBERTEncoder.from_pretrained(folder, device="cpu")
    with caplog.at_level(logging.WARNING, logger="lateint_plugins.core.encoder"):
        first = short.encode_queries([long_query, long_query])
        short.encode_queries(long_query)
    assert caplog.text.count("was cut to query_length") == 1
    assert "query_length=" in caplog.text
    n_tokens = len(short.tokenize([long_query])[0])
    raised = ColBERTEncoder.from_pretrained(folder, device="cpu", query_length=n_tokens + 8)
    assert raised.config.query_length == n_tokens + 8
    assert first[0].shape[0] < n_tokens <= raised.encode_queries(long_query).shape[0]
