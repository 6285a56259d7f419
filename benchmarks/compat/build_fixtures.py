"""Build the compatibility fixtures: tiny replicas of each ColBERT family, saved and encoded by the reference.

Run it inside a reference library's own virtual environment (recipes in ``benchmarks/README.md``,
"Compatibility harness"); it builds the families whose reference is importable there:

    ../venvs/pylate/bin/python benchmarks/compat/build_fixtures.py        # PyLate 1.6 families
    ../venvs/colbert-ai/bin/python benchmarks/compat/build_fixtures.py    # colbert-ai 0.2.22 families

For each family it writes ``tests/fixtures/compat/<family>/``:

* ``model/``: the checkpoint, written by the reference's own save code (``pylate.models.ColBERT.save`` or
  colbert-ai's ``ColBERT.save``) from a randomly initialised 2-layer, hidden-32 backbone whose config is
  the family's published one, shrunk, and a tokenizer that is real when small, else trained offline here
  with ``tokenizers`` on ``texts.py`` (small vocabulary, the family's special tokens);
* ``golden.safetensors``: the reference's vectors, float16, queries and documents each concatenated
  (``queries`` ``(sum of query token counts, dim)``, ``query_lengths``; ``documents``, ``document_lengths``);
* ``golden.json``: texts, token counts, the settings the reference resolved, library versions, notes.

The shared answerai-colbert-small-v1 folder is encoded in place (no copy; ``golden.json`` names it).
No file here imports ``lateint_plugins``: the reference venvs do not have it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import string
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the Hub is unreachable; never wait for it
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import texts as T

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "compat"
SHARED = ROOT.parent / "shared"  # ../shared next to the repository
DEFAULT_ANSWERAI = SHARED / "models" / "answerai-colbert-small-v1"
SEED = 20261130

logger = logging.getLogger("compat.build")


# ---------------------------------------------------------------------------------------------- families
@dataclass(frozen=True)
class Family:
    name: str
    reference: str  # "pylate" or "colbert-ai"
    description: str
    build: Callable[[Path, Path, argparse.Namespace], dict[str, Any]]


def versions(*names: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# ---------------------------------------------------------------------------------------------- tokenizers
BERT_SPECIALS = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece_vocab(
    lines: Sequence[str], vocab_size: int, *, lowercase: bool, pre_split: bool = False
) -> list[str]:
    """A BERT WordPiece vocabulary (specials first, like bert-base: [PAD], [unused0], [unused1], ...)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None if lowercase else False)
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit() if pre_split else pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=BERT_SPECIALS,
        initial_alphabet=list(string.punctuation),
        min_frequency=1,
    )
    tok.train_from_iterator(lines, trainer)
    vocab = tok.get_vocab()
    return [token for token, _ in sorted(vocab.items(), key=lambda kv: kv[1])]


def bert_tokenizer(folder: Path, lines: Sequence[str], vocab_size: int = 1200) -> Any:
    """BertTokenizerFast (lower-cased, like bert-base-uncased) over a WordPiece vocabulary trained here."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    vocab = train_wordpiece_vocab(lines, vocab_size, lowercase=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    if int(transformers.__version__.split(".")[0]) >= 5:  # v5 tokenizers take the vocabulary itself
        tokenizer = transformers.BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    else:
        tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)
    return tokenizer


def modernbert_tokenizer(folder: Path, lines: Sequence[str], vocab_size: int = 1000) -> Any:
    """ModernBERT's tokenizer shape: byte-level BPE, [CLS] text [SEP], [MASK] with lstrip, no token types."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(lines, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token=AddedToken("[MASK]", lstrip=True, rstrip=False, normalized=False, special=True),
        model_max_length=8192,
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def xlmr_tokenizer(
    folder: Path, lines: Sequence[str], extra_special: Sequence[str] = (), vocab_size: int = 1000
) -> Any:
    """XLM-RoBERTa's tokenizer, made the way XLM-R's is: a SentencePiece Unigram model (nmt_nfkc normalisation,
    ▁ word starts) converted by transformers, so tokenizer.json carries the same ``Precompiled`` normaliser.

    fairseq ids as XLM-R: <s>=0, <pad>=1, </s>=2, <unk>=3, pieces shifted by one, <mask> last.
    """
    import sentencepiece as spm
    from transformers import XLMRobertaTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "sentencepiece.bpe"),
        model_type="unigram",
        vocab_size=vocab_size,
        character_coverage=1.0,
        normalization_rule_name="nmt_nfkc",
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    corpus.unlink()
    tokenizer = XLMRobertaTokenizerFast(vocab_file=str(folder / "sentencepiece.bpe.model"), model_max_length=512)
    if extra_special:
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra_special)})
    tokenizer.save_pretrained(folder)
    return tokenizer


def japanese_tokenizer(folder: Path, lines: Sequence[str], vocab_size: int = 1200) -> Any:
    """JaColBERT's tokenizer shape: BertJapaneseTokenizer, MeCab (fugashi + unidic-lite) then WordPiece."""
    import fugashi
    from transformers import BertJapaneseTokenizer

    tagger = fugashi.GenericTagger(_unidic_lite_args())
    words = [" ".join(word.surface for word in tagger(line)) for line in lines]
    vocab = train_wordpiece_vocab(words, vocab_size, lowercase=False, pre_split=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertJapaneseTokenizer(
        vocab_file=str(folder / "vocab.txt"),
        do_lower_case=False,
        word_tokenizer_type="mecab",
        subword_tokenizer_type="wordpiece",
        mecab_kwargs={"mecab_dic": "unidic_lite"},
        model_max_length=512,
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def _unidic_lite_args() -> str:
    import unidic_lite

    return f'-d "{unidic_lite.DICDIR}" -r /dev/null'


# ---------------------------------------------------------------------------------------------- backbones
def save_backbone(folder: Path, config: Any, model_cls: Any) -> None:
    import torch

    torch.manual_seed(SEED)
    model = model_cls(config).eval()
    model.save_pretrained(folder)


def tiny_bert(folder: Path, tokenizer: Any) -> None:
    """bert-base-uncased's config (colbertv2.0's config.json), shrunk to 2 layers of width 32."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_act="gelu",
        max_position_embeddings=512,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        pad_token_id=tokenizer.pad_token_id,
    )
    save_backbone(folder, config, BertModel)


def tiny_xlmr(folder: Path, tokenizer: Any, max_positions: int = 514) -> None:
    """xlm-roberta's config shape (jina-colbert-v2's backbone without its custom flash/rotary code), shrunk."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_act="gelu",
        max_position_embeddings=max_positions,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    save_backbone(folder, config, XLMRobertaModel)


def tiny_modernbert(folder: Path, tokenizer: Any) -> None:
    """GTE-ModernColBERT-v1's config.json (ModernBERT-base) shrunk: hidden 32, 2 layers, its attention pattern."""
    from transformers import ModernBertConfig, ModernBertModel

    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        hidden_activation="gelu",
        max_position_embeddings=8192,
        norm_eps=1e-5,
        norm_bias=False,
        global_attn_every_n_layers=3,
        local_attention=128,
        global_rope_theta=160000.0,
        local_rope_theta=10000.0,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        attention_bias=False,
        mlp_bias=False,
        embedding_dropout=0.0,
        attention_dropout=0.0,
        mlp_dropout=0.0,
    )
    save_backbone(folder, config, ModernBertModel)


# ---------------------------------------------------------------------------------------------- PyLate families
def pylate_encode(model: Any, queries: Sequence[str], documents: Sequence[str]) -> tuple[list[Any], list[Any]]:
    q = model.encode(list(queries), is_query=True, batch_size=4, convert_to_numpy=True, show_progress_bar=False)
    d = model.encode(list(documents), is_query=False, batch_size=4, convert_to_numpy=True, show_progress_bar=False)
    return list(q), list(d)


def pylate_settings(model: Any) -> dict[str, Any]:
    return {
        "query_prefix": model.query_prefix,
        "document_prefix": model.document_prefix,
        "query_prefix_id": model.query_prefix_id,
        "document_prefix_id": model.document_prefix_id,
        "query_length": model.query_length,
        "document_length": model.document_length,
        "do_query_expansion": model.do_query_expansion,
        "attend_to_expansion_tokens": model.attend_to_expansion_tokens,
        "skiplist_ids": sorted({int(i) for i in model.skiplist}),
        "prompts": dict(model.prompts or {}),
        "modules": [type(m).__name__ for m in model],
    }


def pylate_save_and_reload(model: Any, folder: Path) -> Any:
    """Save with PyLate's own code, then load the folder again as a user would (what gets encoded)."""
    from pylate import models

    model.save(str(folder))
    (folder / "README.md").unlink(missing_ok=True)  # the generated model card is large and says nothing here
    return models.ColBERT(model_name_or_path=str(folder), device="cpu")


def build_answerai(out: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from pylate import models

    model = models.ColBERT(model_name_or_path=str(args.answerai), device="cpu")
    q, d = pylate_encode(model, T.ENGLISH_QUERIES, T.ENGLISH_DOCUMENTS)
    return {
        "model": "shared:models/answerai-colbert-small-v1",
        "queries": T.ENGLISH_QUERIES,
        "documents": T.ENGLISH_DOCUMENTS,
        "query_vectors": q,
        "document_vectors": d,
        "settings": pylate_settings(model),
        "notes": ["The real shared model, encoded in place (no copy in the repository)."],
    }


def build_pylate_bert(out: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from pylate import models

    base = work / "bert-base"
    tokenizer = bert_tokenizer(base, T.english_corpus())
    tiny_bert(base, tokenizer)
    import torch

    torch.manual_seed(SEED + 1)
    model = models.ColBERT(model_name_or_path=str(base), embedding_size=16, device="cpu")
    model = pylate_save_and_reload(model, out / "model")
    q, d = pylate_encode(model, T.ENGLISH_QUERIES, T.ENGLISH_DOCUMENTS)
    return {
        "model": "model",
        "queries": T.ENGLISH_QUERIES,
        "documents": T.ENGLISH_DOCUMENTS,
        "query_vectors": q,
        "document_vectors": d,
        "settings": pylate_settings(model),
        "notes": [
            "models.ColBERT(<tiny BERT>, embedding_size=16).save(): PyLate adds its default markers '[Q] ' / '[D] ' "
            "as new tokens and sentence-transformers 5 writes prompts {'query': '', 'document': ''} next to "
            "query_prefix (issue 11, point 1)."
        ],
    }


def build_pylate_dense_stack(out: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from pylate import models
    from pylate.models import Dense

    base = work / "bert-base-stack"
    tokenizer = bert_tokenizer(base, T.english_corpus())
    tiny_bert(base, tokenizer)
    torch.manual_seed(SEED + 2)
    first = Dense(in_features=32, out_features=24, bias=True, activation_function=torch.nn.Tanh())
    second = Dense(in_features=24, out_features=16, bias=True, use_residual=True)
    model = models.ColBERT(
        model_name_or_path=str(base),
        embedding_size=24,
        bias=True,
        query_prefix="[unused0]",
        document_prefix="[unused1]",
        device="cpu",
    )
    # Replace the default head by the two layers above (bias, Tanh, a residual across different sizes).
    model[1] = first
    model.append(second)
    model = pylate_save_and_reload(model, out / "model")
    q, d = pylate_encode(model, T.ENGLISH_QUERIES, T.ENGLISH_DOCUMENTS)
    return {
        "model": "model",
        "queries": T.ENGLISH_QUERIES,
        "documents": T.ENGLISH_DOCUMENTS,
        "query_vectors": q,
        "document_vectors": d,
        "settings": pylate_settings(model),
        "notes": [
            "Two PyLate Dense modules: 32->24 with bias and Tanh, then 24->16 with bias and use_residual=True "
            "(a residual Linear since the sizes differ) (issue 11, point 2). Markers [unused0]/[unused1]."
        ],
    }


def build_pylate_modernbert(out: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from pylate import models

    base = work / "modernbert-base"
    tokenizer = modernbert_tokenizer(base, T.english_corpus())
    tiny_modernbert(base, tokenizer)
    torch.manual_seed(SEED + 3)
    # GTE-ModernColBERT-v1's config_sentence_transformers.json: [Q] / [D] markers, query 32, document 300,
    # no attention to expansion tokens, the punctuation skiplist (PyLate's defaults but the document length).
    model = models.ColBERT(model_name_or_path=str(base), embedding_size=16, document_length=300, device="cpu")
    model = pylate_save_and_reload(model, out / "model")
    q, d = pylate_encode(model, T.ENGLISH_QUERIES, T.ENGLISH_DOCUMENTS)
    return {
        "model": "model",
        "queries": T.ENGLISH_QUERIES,
        "documents": T.ENGLISH_DOCUMENTS,
        "query_vectors": q,
        "document_vectors": d,
        "settings": pylate_settings(model),
        "notes": [
            "ModernBERT (global attention every 3rd layer, RoPE) with a byte-level BPE tokenizer trained offline "
            "(no [unusedN]: PyLate adds '[Q] ' / '[D] ' as new tokens); saved by PyLate 1.6 like GTE-ModernColBERT-v1."
        ],
    }


def build_pylate_japanese(out: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from pylate import models

    base = work / "japanese-bert-base"
    tokenizer = japanese_tokenizer(base, T.japanese_corpus())
    tiny_bert(base, tokenizer)
    torch.manual_seed(SEED + 4)
    model = models.ColBERT(
        model_name_or_path=str(base),
        embedding_size=16,
        query_prefix="[unused0]",
        document_prefix="[unused1]",
        device="cpu",
    )
    model = pylate_save_and_reload(model, out / "model")
    q, d = pylate_encode(model, T.JAPANESE_QUERIES, T.JAPANESE_DOCUMENTS)
    return {
        "model": "model",
        "queries": T.JAPANESE_QUERIES,
        "documents": T.JAPANESE_DOCUMENTS,
        "query_vectors": q,
        "document_vectors": d,
        "settings": pylate_settings(model),
        "requires": ["fugashi", "unidic_lite"],
        "notes": [
            "BertJapaneseTokenizer (MeCab word splitting through fugashi + unidic-lite, then WordPiece) as "
            "JaColBERT's cl-tohoku/bert-base-japanese-v3 tokenizer; vocabulary trained offline; markers "
            "[unused0]/[unused1]."
        ],
    }


# ---------------------------------------------------------------------------------------------- colbert-ai families
def colbert_config(**overrides: Any) -> Any:
    from colbert.infra import ColBERTConfig

    return ColBERTConfig(**overrides)


def colbert_save(base: Path, folder: Path, config: Any) -> None:
    """colbert-ai's own save: HF_ColBERT.save_pretrained + tokenizer + artifact.metadata."""
    import torch
    from colbert.modeling.colbert import ColBERT

    torch.manual_seed(SEED + 10)
    model = ColBERT(name=str(base), colbert_config=config)
    model.save(str(folder))


def colbert_encode(folder: Path, queries: Sequence[str], documents: Sequence[str]) -> tuple[list[Any], list[Any], Any]:
    import torch
    from colbert.modeling.checkpoint import Checkpoint

    checkpoint = Checkpoint(str(folder), colbert_config=colbert_config())
    with torch.inference_mode():
        q = checkpoint.queryFromText(list(queries), bsize=4)
        d, lengths = checkpoint.docFromText(list(documents), bsize=4, keep_dims="flatten")
    q_list = [row.float().numpy() for row in q]
    d_list = [piece.float().numpy() for piece in torch.split(d, list(lengths))]
    return q_list, d_list, checkpoint


def colbert_settings(checkpoint: Any) -> dict[str, Any]:
    config = checkpoint.colbert_config
    q_tok, d_tok = checkpoint.query_tokenizer, checkpoint.doc_tokenizer
    return {
        "query_token_id": config.query_token_id,
        "doc_token_id": config.doc_token_id,
        "query_marker_id": int(q_tok.Q_marker_token_id),
        "doc_marker_id": int(d_tok.D_marker_token_id),
        "query_maxlen": config.query_maxlen,
        "doc_maxlen": config.doc_maxlen,
        "attend_to_mask_tokens": config.attend_to_mask_tokens,
        "mask_punctuation": config.mask_punctuation,
        "dim": config.dim,
        "skiplist_ids": sorted({int(k) for k in getattr(checkpoint, "skiplist", {}) if isinstance(k, int)}),
    }


def _strip_checkpoint_path(folder: Path) -> None:
    """artifact.metadata records the scratch base folder as 'checkpoint'; the reader replaces it anyway."""
    path = folder / "artifact.metadata"
    meta = json.loads(path.read_text())
    meta["checkpoint"] = None
    path.write_text(json.dumps(meta, indent=4) + "\n")


def _drop_slow_tokenizer(folder: Path) -> None:
    """Publish tokenizer.json only, as jina-colbert-v2 does (the SentencePiece file repeats it, ~250 KB)."""
    (folder / "sentencepiece.bpe.model").unlink(missing_ok=True)


def build_stanford_bert(out: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    base = work / "stanford-bert-base"
    tokenizer = bert_tokenizer(base, T.english_corpus())
    tiny_bert(base, tokenizer)
    # colbertv2.0's artifact.metadata: [unused0]/[unused1], query_maxlen 32, doc_maxlen 180, dim 128 (16 here),
    # mask_punctuation, no attention to [MASK] expansion.
    config = colbert_config(dim=16, query_maxlen=32, doc_maxlen=180, mask_punctuation=True, attend_to_mask_tokens=False)
    colbert_save(base, out / "model", config)
    _strip_checkpoint_path(out / "model")
    _drop_slow_tokenizer(out / "model")
    q, d, checkpoint = colbert_encode(out / "model", T.ENGLISH_QUERIES, T.ENGLISH_DOCUMENTS)
    notes = ["HF_ColBERT (BERT, lower-cased WordPiece with [unused0]/[unused1]) saved by colbert-ai's ColBERT.save."]
    notes += _mask_punctuation_false_note(out / "model")
    return {
        "model": "model",
        "queries": T.ENGLISH_QUERIES,
        "documents": T.ENGLISH_DOCUMENTS,
        "query_vectors": q,
        "document_vectors": d,
        "settings": colbert_settings(checkpoint),
        "notes": notes,
    }


def _mask_punctuation_false_note(folder: Path) -> list[str]:
    """Whether colbert-ai's own docFromText works with mask_punctuation=False (it is known to crash)."""
    from colbert.modeling.checkpoint import Checkpoint

    try:
        checkpoint = Checkpoint(str(folder), colbert_config=colbert_config(mask_punctuation=False))
        checkpoint.docFromText(["a short document."], bsize=1, keep_dims="flatten")
    except Exception as exc:
        return [f"colbert-ai docFromText with mask_punctuation=False fails: {type(exc).__name__}: {exc}"]
    return ["colbert-ai docFromText with mask_punctuation=False runs."]


def build_stanford_xlmr(out: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    base = work / "stanford-xlmr-base"
    tokenizer = xlmr_tokenizer(base, T.multilingual_corpus())
    tiny_xlmr(base, tokenizer)
    # A Stanford checkpoint on a ▁-vocabulary that keeps colbert-ai's default markers: [unused0]/[unused1]
    # are not in the vocabulary, so colbert-ai's convert_tokens_to_ids maps both to <unk>.
    config = colbert_config(dim=16, query_maxlen=32, doc_maxlen=180, mask_punctuation=True, attend_to_mask_tokens=False)
    colbert_save(base, out / "model", config)
    _strip_checkpoint_path(out / "model")
    _drop_slow_tokenizer(out / "model")
    q, d, checkpoint = colbert_encode(out / "model", T.MULTILINGUAL_QUERIES, T.MULTILINGUAL_DOCUMENTS)
    return {
        "model": "model",
        "queries": T.MULTILINGUAL_QUERIES,
        "documents": T.MULTILINGUAL_DOCUMENTS,
        "query_vectors": q,
        "document_vectors": d,
        "settings": colbert_settings(checkpoint),
        "notes": [
            "XLM-R SentencePiece Unigram vocabulary (nmt_nfkc, ▁ word starts) trained offline; markers "
            "[unused0]/[unused1] are missing "
            "from it and colbert-ai maps them to <unk>; its punctuation skiplist takes the first piece of each "
            "encoded symbol, which on this vocabulary includes the bare '▁' piece (issue 11, point 3)."
        ],
    }


def build_jina_v2(out: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    base = work / "jina-v2-base"
    tokenizer = xlmr_tokenizer(base, T.multilingual_corpus(), extra_special=["[QueryMarker]", "[DocumentMarker]"])
    tiny_xlmr(base, tokenizer)
    # jina-colbert-v2's artifact.metadata: [QueryMarker]/[DocumentMarker] markers, query_maxlen 32, attends to
    # the [MASK]-expansion tokens; doc_maxlen shrunk (its 8192 positions would dominate the fixture size).
    config = colbert_config(
        dim=32,
        query_maxlen=32,
        doc_maxlen=510,
        mask_punctuation=True,
        attend_to_mask_tokens=True,
        query_token_id="[QueryMarker]",
        doc_token_id="[DocumentMarker]",
        query_token="[QueryMarker]",
        doc_token="[DocumentMarker]",
    )
    colbert_save(base, out / "model", config)
    _strip_checkpoint_path(out / "model")
    _drop_slow_tokenizer(out / "model")
    q, d, checkpoint = colbert_encode(out / "model", T.MULTILINGUAL_QUERIES, T.MULTILINGUAL_DOCUMENTS)
    return {
        "model": "model",
        "queries": T.MULTILINGUAL_QUERIES,
        "documents": T.MULTILINGUAL_DOCUMENTS,
        "query_vectors": q,
        "document_vectors": d,
        "settings": colbert_settings(checkpoint),
        "notes": [
            "Stanford-style files as jina-colbert-v2 publishes them (HF_ColBERT, artifact.metadata with "
            "[QueryMarker]/[DocumentMarker] and attend_to_mask_tokens=true), XLM-R vocabulary with the two markers "
            "as added special tokens. The real backbone is Jina's custom XLMRobertaFlash code (rotary positions, "
            "trust_remote_code, Hub-only): this replica uses transformers' XLMRobertaModel so a reference can run "
            "offline. Only the default projection head (dim 32 here, 128 in the real model) is covered: the "
            "Matryoshka 96/64 heads have no offline reference."
        ],
    }


FAMILIES: list[Family] = [
    Family("stanford-bert", "colbert-ai", "Stanford colbertv2.0 layout (BERT, artifact.metadata)", build_stanford_bert),
    Family("answerai-small", "pylate", "answerai-colbert-small-v1 (PyLate legacy layout, real model)", build_answerai),
    Family("pylate-modernbert", "pylate", "PyLate 1.6 ModernBERT (GTE-ModernColBERT layout)", build_pylate_modernbert),
    Family("pylate-bert", "pylate", "PyLate 1.6 from a BERT base (prompts written by ST 5)", build_pylate_bert),
    Family("pylate-dense-stack", "pylate", "PyLate 1.6, two Dense: bias+Tanh, use_residual", build_pylate_dense_stack),
    Family("jina-colbert-v2", "colbert-ai", "Jina-ColBERT v2 layout (XLM-R, [QueryMarker])", build_jina_v2),
    Family("pylate-japanese", "pylate", "Japanese BERT tokenizer (JaColBERT, MeCab)", build_pylate_japanese),
    Family("stanford-xlmr", "colbert-ai", "Stanford layout on an XLM-R vocabulary", build_stanford_xlmr),
]


# ---------------------------------------------------------------------------------------------- output
def write_fixture(family: Family, out: Path, result: dict[str, Any]) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    queries, documents = result["query_vectors"], result["document_vectors"]
    tensors = {
        "queries": np.ascontiguousarray(np.concatenate(queries).astype(np.float16)),
        "query_lengths": np.asarray([len(v) for v in queries], dtype=np.int64),
        "documents": np.ascontiguousarray(np.concatenate(documents).astype(np.float16)),
        "document_lengths": np.asarray([len(v) for v in documents], dtype=np.int64),
    }
    tensors["reference_scores"] = maxsim_matrix(queries, documents)
    save_file(tensors, str(out / "golden.safetensors"))
    reference_packages = (
        ("pylate", "sentence-transformers", "transformers", "tokenizers", "torch")
        if family.reference == "pylate"
        else ("colbert-ai", "transformers", "tokenizers", "torch")
    )
    record = {
        "family": family.name,
        "order": [f.name for f in FAMILIES].index(family.name),
        "description": family.description,
        "reference": family.reference,
        "versions": versions(*reference_packages, "fugashi", "unidic-lite"),
        "model": result["model"],
        "load_kwargs": result.get("load_kwargs", {}),
        "requires": result.get("requires", []),
        "dim": int(tensors["queries"].shape[1]),
        "queries": list(result["queries"]),
        "documents": list(result["documents"]),
        "query_token_counts": tensors["query_lengths"].tolist(),
        "document_token_counts": tensors["document_lengths"].tolist(),
        "reference_settings": result["settings"],
        "notes": result.get("notes", []),
    }
    tmp = out / "golden.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / "golden.json")


def maxsim_matrix(queries: Sequence[Any], documents: Sequence[Any]) -> Any:
    """``(n_queries, n_documents)`` float32 MaxSim scores of the reference's own float32 vectors.

    Rankings are compared against these, not against scores recomputed from the float16 copies, so a
    near-tie cannot flip through storage rounding.
    """
    import numpy as np

    scores = np.zeros((len(queries), len(documents)), dtype=np.float32)
    for i, q in enumerate(queries):
        for j, d in enumerate(documents):
            q32, d32 = np.asarray(q, dtype=np.float32), np.asarray(d, dtype=np.float32)
            scores[i, j] = (q32 @ d32.T).max(axis=1).sum()
    return scores


def reference_available(name: str) -> bool:
    module = {"pylate": "pylate", "colbert-ai": "colbert"}[name]
    try:
        __import__(module)
    except Exception:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", help="comma-separated family names (default: every family this venv can build)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture root (default: tests/fixtures/compat)")
    parser.add_argument("--answerai", type=Path, default=DEFAULT_ANSWERAI, help="the shared answerai folder")
    parser.add_argument("--work", type=Path, help="scratch folder for the base backbones (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    wanted = {f.name for f in FAMILIES} if not args.families else set(args.families.split(","))
    unknown = wanted - {f.name for f in FAMILIES}
    if unknown:
        parser.error(f"unknown families {sorted(unknown)}; known: {[f.name for f in FAMILIES]}")
    work = args.work or Path(tempfile.mkdtemp(prefix="compat-build-"))
    built = 0
    for family in FAMILIES:
        if family.name not in wanted:
            continue
        if not reference_available(family.reference):
            if args.families:
                logger.error("%s needs %s, which this venv cannot import", family.name, family.reference)
                return 2
            continue
        out = args.out / family.name
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        logger.info("building %s with %s", family.name, family.reference)
        result = family.build(out, work / family.name, args)
        write_fixture(family, out, result)
        built += 1
    if not built:
        logger.error("no family built: this venv imports neither pylate nor colbert")
        return 2
    logger.info("built %d families into %s", built, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
