"""Creating a collection in the layout and checking one that exists against the encoder opening it."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import DimensionMismatchError
from lateint_plugins.core.fingerprint import check_fingerprint
from lateint_plugins.qdrant.errors import CollectionMismatchError
from lateint_plugins.qdrant.filters import _metadata_key
from lateint_plugins.qdrant.layout import _MARKER, LAYOUT_VERSION, LEXICAL, POOLED, TOKENS, CollectionConfig

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger(__name__)


def check_recorded(
    name: str,
    recorded: Mapping[str, Any],
    encoder: ColBERTEncoder,
    marker: Mapping[str, Any],
    allow_model_mismatch: bool,
) -> None:
    """Refuse to open collection ``name`` (its recorded marker) with an encoder that does not fit it."""
    if int(recorded.get("layout_version", 0)) > LAYOUT_VERSION:
        raise CollectionMismatchError(
            f"Collection {name!r} uses layout version {recorded['layout_version']}; this lateint-plugins reads "
            f"up to {LAYOUT_VERSION}. Upgrade lateint-plugins."
        )
    if recorded.get("dim") != encoder.dim:
        raise DimensionMismatchError(
            f"Collection {name!r} holds {recorded.get('dim')}-d vectors of {recorded.get('model_name')!r} but "
            f"the encoder produces {encoder.dim}-d vectors; use the model the collection was built with."
        )
    where = f"Qdrant collection {name!r}"
    if recorded.get("fingerprint") is not None:
        # The fingerprint decides (weights and document settings); the name is informational, so
        # a moved or renamed model folder with the same weights opens.
        check_fingerprint(
            recorded["fingerprint"], encoder.fingerprint, where=where, allow_mismatch=allow_model_mismatch
        )
    else:
        check_fingerprint(None, encoder.fingerprint, where=where)  # warns: written before fingerprints
        if recorded.get("model_name") != marker["model_name"]:
            message = (
                f"Collection {name!r} was built with model {recorded.get('model_name')!r} but the encoder is "
                f"{marker['model_name']!r}; scores of different models do not mix. Load "
                f"{recorded.get('model')!r}, use another collection, or pass allow_model_mismatch=True."
            )
            if not allow_model_mismatch:
                raise CollectionMismatchError(message)
            logger.warning(message)


def create_collection(
    call: Callable[..., Any],
    client: QdrantClient,
    name: str,
    dim: int,
    config: CollectionConfig,
    marker: Mapping[str, Any],
) -> None:
    """Create collection ``name`` in the layout ``config`` for ``dim``-d vectors, with its payload indexes.

    ``call(what, fn, *args, **kwargs)`` runs each client request (the store's retrying wrapper).
    """
    from qdrant_client import models

    pooled_multi = (
        models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM) if config.pooled_vectors > 1 else None
    )
    vectors = {
        POOLED: models.VectorParams(
            size=dim,
            distance=models.Distance.DOT if pooled_multi else models.Distance.COSINE,
            multivector_config=pooled_multi,
            hnsw_config=models.HnswConfigDiff(m=config.hnsw_m, ef_construct=config.hnsw_ef_construct),
            on_disk=config.pooled_on_disk,
            quantization_config=config.pooled_quantization,
        ),
    }
    if config.token_layout == "fp16":  # the "plaid" layout keeps its codes in the payload
        vectors[TOKENS] = models.VectorParams(
            size=dim,
            # Token vectors are unit-norm and stored at fp16 precision, so DOT is the cosine and
            # Qdrant's MAX_SIM equals core.scoring.maxsim.
            distance=models.Distance.DOT,
            datatype=models.Datatype.FLOAT16,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            hnsw_config=models.HnswConfigDiff(m=0),  # never searched by graph: only rescored
            on_disk=config.tokens_on_disk,
            quantization_config=config.tokens_quantization,
        )
    call(
        f"create collection {name!r}",
        client.create_collection,
        name,
        vectors_config=vectors,
        shard_number=config.shard_number,
        replication_factor=config.replication_factor,
        write_consistency_factor=config.write_consistency_factor,
        on_disk_payload=config.on_disk_payload,
        sparse_vectors_config=(
            {LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)} if config.lexical else None
        ),
        metadata={_MARKER: marker},
    )
    user = [(_metadata_key(key.split("."), config.payload_keys.metadata), models.PayloadSchemaType(schema))
            for key, schema in config.payload_indexes.items()]  # fmt: skip
    for field_name, schema in (
        ("doc_id", models.PayloadSchemaType.KEYWORD),
        ("window", models.PayloadSchemaType.INTEGER),
        ("write_id", models.PayloadSchemaType.KEYWORD),
        *user,
    ):
        with warnings.catch_warnings():  # local mode warns that payload indexes do nothing there
            warnings.simplefilter("ignore", UserWarning)
            call("index payload", client.create_payload_index, name, field_name, schema)
    logger.info("Created Qdrant collection %r (%s)", name, marker)
