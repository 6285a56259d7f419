"""The public surface: pinned exports, cheap imports, no bare top-level `core`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lateint_plugins.core as core_pkg

import lateint_plugins

EXPECTED_TOP = [
    "ColBERTEncoder",
    "ExactIndex",
    "LateInteractionError",
    "LateInteractionStore",
    "SearchResult",
    "__version__",
    "maxsim",
    "rerank",
]
EXPECTED_CORE = [
    "BeirDataset",
    "ColBERTEncoder",
    "CorruptIndexError",
    "DEFAULT_MODEL",
    "DimensionMismatchError",
    "DuplicateIdError",
    "EncoderConfig",
    "ExactIndex",
    "Index",
    "IndexNotFoundError",
    "InvalidInputError",
    "LateInteractionError",
    "LateInteractionStore",
    "MissingDependencyError",
    "ModelLoadError",
    "ModelMismatchError",
    "SearchHit",
    "SearchResult",
    "UnknownIdError",
    "document_text",
    "evaluate",
    "load_beir",
    "load_index",
    "maxsim",
    "rerank",
]


def test_all_is_pinned() -> None:
    assert sorted(lateint_plugins.__all__) == sorted(EXPECTED_TOP)
    assert sorted(core_pkg.__all__) == sorted(EXPECTED_CORE)
    for name in EXPECTED_CORE:
        assert getattr(core_pkg, name) is not None
    assert lateint_plugins.ExactIndex is core_pkg.ExactIndex


def _run(code: str, cwd: Path) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_import_is_cheap(tmp_path: Path) -> None:
    heavy = ["torch", "transformers", "langchain_core", "llama_index", "qdrant_client", "faiss", "numpy"]
    code = (
        "import json, sys\n"
        "import lateint_plugins, lateint_plugins.core, lateint_plugins.core.errors\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n"
    )
    assert json.loads(_run(code, tmp_path)) == []


def test_no_bare_core_module_is_installed(tmp_path: Path) -> None:
    code = "import importlib.util; print(importlib.util.find_spec('core') is None)"
    assert _run(code, tmp_path).strip() == "True"


def test_missing_extra_names_the_install_command() -> None:
    import pytest
    from lateint_plugins.core.errors import MissingDependencyError, require

    with pytest.raises(MissingDependencyError, match=r"pip install 'lateint-plugins\[qdrant\]'"):
        require("surely_not_an_installed_module_xyz", "qdrant")
    with pytest.raises(ImportError):  # still an ImportError for generic handlers
        require("surely_not_an_installed_module_xyz", "qdrant")


def test_adapter_exports_are_pinned() -> None:
    import lateint_plugins.langchain as lc
    import lateint_plugins.llama_index as li

    assert sorted(lc.__all__) == ["LateInteractionReranker", "LateInteractionRetriever", "LateInteractionVectorStore"]
    assert sorted(li.__all__) == [
        "LateInteractionRerank",
        "LateInteractionRetriever",
        "LateInteractionVectorStore",
        "NoEmbedding",
        "metadata_filters_to_dict",
    ]
