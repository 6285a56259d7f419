"""A ColBERT node-postprocessor reranker for LlamaIndex.

:class:`LateInteractionRerank` reorders candidates (e.g. BM25's top 100) by real ColBERT MaxSim:
query/document markers, ``[MASK]`` query augmentation, the projection head, the sum over query tokens,
documents encoded in batches on the resolved device. It scores the same ``MetadataMode`` content
(default ``EMBED``) that :class:`LateInteractionRetriever` and :class:`LateInteractionVectorStore`
index, so a node scores the same in all three (up to the index's fp16 storage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from lateint_plugins.core._checks import check_device, check_k, check_sequence, check_text
from lateint_plugins.core.encoder import DEFAULT_MODEL, ColBERTEncoder, resolve_device
from lateint_plugins.core.errors import InvalidInputError
from lateint_plugins.core.rerank import rerank
from lateint_plugins.llama_index._nodes import check_metadata_mode, check_query_str

__all__ = ["LateInteractionRerank"]

# One dispatcher for the whole adapter, under the package's public name (handlers attach to it).
dispatcher = get_dispatcher("lateint_plugins.llama_index")


class LateInteractionRerank(BaseNodePostprocessor):
    """Rerank nodes by ColBERT MaxSim against the query, best first.

    The query and all candidate texts are encoded by a :class:`ColBERTEncoder` (documents in
    batches of ``batch_size``, on ``device``) and scored by the core's
    :func:`~lateint_plugins.core.rerank.rerank`, so a node's new score is exactly the MaxSim score
    an index built with the same model would give. Ties keep the input order. Input nodes are not
    modified; new ``NodeWithScore`` objects are returned.

    Args:
        top_n: nodes kept after reranking.
        model: checkpoint folder or Hub id (ignored when ``encoder`` is given).
        device: where the encoder runs (default: CUDA, then MPS, then CPU); stored resolved.
        keep_retrieval_score: copy each node's incoming score into its metadata as ``"retrieval_score"``.
        batch_size: documents per encoder batch.
        metadata_mode: which of a node's content is scored (LlamaIndex's ``MetadataMode``; default
            ``EMBED``, the text plus the metadata meant for embedding, as other LlamaIndex rerankers and
            as :class:`LateInteractionRetriever` / :class:`LateInteractionVectorStore` index by default:
            keep the two equal and a node's rerank score equals its retrieval score).
        encoder: an already loaded encoder to share (e.g. ``store.encoder``).
        callback_manager: LlamaIndex callback manager (receives a ``RERANKING`` event).
        **encoder_options: :class:`EncoderConfig` overrides when loading ``model`` (e.g. ``document_length``).

    Example:
        >>> rerank = LateInteractionRerank(top_n=10, model="answerdotai/answerai-colbert-small-v1")
        >>> rerank.postprocess_nodes(bm25.retrieve(query), query_str=query)
    """

    model: str = Field(default=DEFAULT_MODEL, description="ColBERT checkpoint folder or Hugging Face Hub id.")
    top_n: int = Field(default=5, description="Number of nodes to return, best first.")
    device: str = Field(default="cpu", description="Device the encoder runs on (resolved at construction).")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep each node's incoming score in its metadata as 'retrieval_score'."
    )
    batch_size: int = Field(default=32, description="Documents per encoder batch.")
    metadata_mode: MetadataMode = Field(default=MetadataMode.EMBED, description="Which of a node's content is scored.")
    _encoder: ColBERTEncoder = PrivateAttr()

    def __init__(
        self,
        top_n: int = 5,
        model: str | Path = DEFAULT_MODEL,
        device: str | torch.device | None = None,
        keep_retrieval_score: bool = False,
        batch_size: int = 32,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        *,
        encoder: ColBERTEncoder | None = None,
        callback_manager: CallbackManager | None = None,
        **encoder_options: Any,
    ) -> None:
        check_k(top_n, "top_n")
        check_k(batch_size, "batch_size")
        if encoder is None:
            device = None if device is None else check_device(device)
            encoder = ColBERTEncoder.from_pretrained(model, device=resolve_device(device), **encoder_options)
        elif encoder_options or device is not None:
            raise InvalidInputError(
                "device and encoder options only apply when the reranker loads the model; "
                "with encoder= they are fixed by that encoder. Drop them or drop encoder=."
            )
        fields: dict[str, Any] = {
            "model": encoder.name_or_path or str(model),
            "top_n": top_n,
            "device": str(encoder.device),  # the resolved device, never None
            "keep_retrieval_score": keep_retrieval_score,
            "batch_size": batch_size,
            "metadata_mode": check_metadata_mode(metadata_mode),
            "callback_manager": callback_manager or CallbackManager([]),
        }
        super().__init__(**fields)
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "LateInteractionRerank"

    @property
    def encoder(self) -> ColBERTEncoder:
        """The ColBERT encoder used for scoring."""
        return self._encoder

    def postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
        query_str: str | None = None,
    ) -> list[NodeWithScore]:
        """The best ``top_n`` of ``nodes`` by MaxSim against the query (``query_str`` or ``query_bundle``)."""
        if query_str is not None and query_bundle is not None:
            raise InvalidInputError("Pass the query as query_str or as query_bundle, not both.")
        if query_str is not None:
            query_bundle = QueryBundle(check_text(query_str, "query_str"))
        return self._postprocess_nodes(nodes, query_bundle)

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InvalidInputError(
                "LateInteractionRerank needs the query: call postprocess_nodes(nodes, query_str=...) "
                "or pass query_bundle=."
            )
        check_query_str(query_bundle, "query_bundle")
        nodes = check_sequence(nodes, "nodes", "NodeWithScore", "node")
        for i, item in enumerate(nodes):
            if not isinstance(item, NodeWithScore):
                raise InvalidInputError(f"nodes[{i}] must be a NodeWithScore, got {type(item).__name__}.")
        if not nodes:
            return []
        texts = [
            check_text(n.node.get_content(metadata_mode=self.metadata_mode), f"nodes[{i}].text", allow_empty=True)
            for i, n in enumerate(nodes)
        ]
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model))
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            ranked = rerank(
                query_bundle.query_str,
                texts,
                k=self.top_n,
                encoder=self._encoder,
                document_embeddings=self._encode(texts),
            )
            reranked = [self._rescored(nodes[r.index], r.score) for r in ranked]
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _encode(self, texts: list[str]) -> list[torch.Tensor]:
        """Token matrices for ``texts``; an empty text encodes to its marker tokens, as in a store."""
        return self._encoder.encode_documents(texts, batch_size=self.batch_size)

    def _rescored(self, item: NodeWithScore, score: float) -> NodeWithScore:
        node = item.node
        if self.keep_retrieval_score:
            node = node.model_copy(update={"metadata": {**node.metadata, "retrieval_score": item.score}})
        return NodeWithScore(node=node, score=score)
