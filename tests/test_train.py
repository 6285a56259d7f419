"""Fine-tuning (core.training): the loss falls, saves load unchanged, resumes are exact, heads are selectable.

Everything runs on the tiny random BERTs of conftest.py (hidden 32), a few steps each, fp32 on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lateint_plugins.core.encoder import ColBERTEncoder
from lateint_plugins.core.errors import CorruptIndexError, InvalidInputError
from lateint_plugins.core.training import (
    BM25,
    TrainableColBERT,
    Trainer,
    TrainingConfig,
    TrainingExample,
    beir_examples,
    colbert_scores,
    contrastive_loss,
    latest_checkpoint,
    read_examples,
    split_queries,
)
from lateint_plugins.core.training.trainer import _Batch
from safetensors.torch import load_file

TOPICS = [
    "cats purr and chase mice in the barn",
    "rockets launch satellites into orbit",
    "bread is baked in hot ovens",
    "rivers flow down to the sea",
    "pianos have keys hammers and strings",
    "glaciers are slow rivers of ice",
]
QUERIES = ["what do cats chase", "how do satellites reach orbit", "where is bread baked",
           "where do rivers go", "what is inside a piano", "what are glaciers made of"]  # fmt: skip


def toy_examples() -> list[TrainingExample]:
    return [TrainingExample(q, (t, *[o for o in TOPICS if o != t])) for q, t in zip(QUERIES, TOPICS, strict=True)]


def fp32(**overrides: object) -> TrainingConfig:
    options: dict = {"batch_size": 3, "learning_rate": 1e-3, "precision": "fp32", "show_progress_bar": False}
    return TrainingConfig(**{**options, **overrides})


@pytest.fixture(autouse=True)
def one_thread() -> object:
    """Tiny models train ~10x faster on one thread than on two busy cores (thread hand-offs dominate)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model(tiny_pylate_path: Path) -> TrainableColBERT:
    return TrainableColBERT.from_pretrained(tiny_pylate_path, matryoshka_dims=(8,))


def full_batch_loss(trainer: Trainer) -> float:
    """The contrastive loss of every query against every topic, dropout off (a fixed yardstick)."""
    m = trainer.model
    m.eval()
    with torch.no_grad():
        batch = _Batch(
            m.tokenize_queries(QUERIES),
            m.tokenize_documents(TOPICS),
            torch.arange(len(TOPICS)),
            torch.zeros(len(QUERIES), len(TOPICS), dtype=torch.bool),
            torch.zeros(0),
        )
        loss = trainer._loss(m(batch.queries), m(batch.documents), batch)
    m.train()
    return float(loss)


def test_loss_falls_on_a_toy_set(model: TrainableColBERT, tmp_path: Path) -> None:
    trainer = Trainer(
        model, toy_examples(), fp32(max_steps=24, learning_rate=3e-3, negatives_per_query=3), output_dir=tmp_path
    )
    before = full_batch_loss(trainer)
    result = trainer.train()
    after = full_batch_loss(trainer)
    assert len(result.losses) == 24 and all(torch.isfinite(torch.tensor(result.losses)))
    assert after < 0.6 * before, (before, after)  # measured 3.11 -> 1.03


def test_save_load_round_trip_gives_identical_encodings(model: TrainableColBERT, tmp_path: Path) -> None:
    result = Trainer(model, toy_examples(), fp32(max_steps=2), output_dir=tmp_path).train()
    assert result.model_path == tmp_path / "model"
    files = {p.name for p in result.model_path.iterdir()}
    assert {"modules.json", "config_sentence_transformers.json", "sentence_bert_config.json", "1_Dense"} <= files
    loaded = ColBERTEncoder.from_pretrained(result.model_path, device="cpu", precision="fp32")
    assert loaded.checkpoint_format == "pylate" and loaded.dim == 16
    live = model.as_encoder()
    for ours, theirs in zip(live.encode_documents(TOPICS), loaded.encode_documents(TOPICS), strict=True):
        assert torch.equal(ours, theirs)
    assert torch.equal(live.encode_queries(QUERIES[:2])[0], loaded.encode_queries(QUERIES[:2])[0])
    # Training moved the weights away from the starting checkpoint's.
    start = ColBERTEncoder.from_pretrained(model.name_or_path, device="cpu", precision="fp32")
    assert not torch.equal(start.encode_documents(TOPICS[:1])[0], loaded.encode_documents(TOPICS[:1])[0])


def test_plain_encoder_gets_a_projection_and_markers(tiny_bert_path: Path, tmp_path: Path) -> None:
    model = TrainableColBERT.from_pretrained(tiny_bert_path, embedding_dim=8, document_length=40)
    assert model.dims == [8] and model.config.query_prefix == "[unused0]"
    model.save(tmp_path / "colbert")
    loaded = ColBERTEncoder.from_pretrained(tmp_path / "colbert", device="cpu", precision="fp32")
    assert loaded.checkpoint_format == "pylate" and loaded.dim == 8
    assert loaded.config.document_prefix == "[unused1]" and loaded.config.document_length == 40
    assert torch.equal(loaded.encode_documents(TOPICS[:1])[0], model.as_encoder().encode_documents(TOPICS[:1])[0])
    # The same call (same seed) builds the same new head.
    again = TrainableColBERT.from_pretrained(tiny_bert_path, embedding_dim=8)
    assert torch.equal(again.heads["8"].weight, model.heads["8"].weight)


def test_resume_gives_the_weights_of_an_uninterrupted_run(tiny_pylate_path: Path, tmp_path: Path) -> None:
    # Dropout on, two heads, accumulation: the data order, the RNG, AdamW and the schedule must all resume.
    config = fp32(max_steps=4, batch_size=2, gradient_accumulation_steps=2, save_every=2, keep_checkpoints=None,
                  warmup_steps=1, negatives_per_query=2)  # fmt: skip
    first = TrainableColBERT.from_pretrained(tiny_pylate_path, matryoshka_dims=(8,))
    Trainer(first, toy_examples(), config, output_dir=tmp_path / "a").train()
    assert latest_checkpoint(tmp_path / "a") == tmp_path / "a" / "checkpoints" / "step-0000004"

    second = TrainableColBERT.from_pretrained(tiny_pylate_path, matryoshka_dims=(8,))
    trainer = Trainer(second, toy_examples(), config, output_dir=tmp_path / "b")
    result = trainer.train(resume_from=tmp_path / "a" / "checkpoints" / "step-0000002")
    assert result.steps == 4 and len(result.losses) == 2
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The steps after the checkpoint did change the weights, so the equality above is not vacuous.
    resumed_from = load_file(str(tmp_path / "a" / "checkpoints" / "step-0000002" / "model.safetensors"))
    assert not torch.equal(resumed_from["heads.8.weight"], b["heads.8.weight"])
    assert not torch.equal(resumed_from["backbone.encoder.layer.0.attention.self.query.weight"],
                           b["backbone.encoder.layer.0.attention.self.query.weight"])  # fmt: skip


def test_resume_with_other_data_order_settings_is_refused(model: TrainableColBERT, tmp_path: Path) -> None:
    Trainer(model, toy_examples(), fp32(max_steps=1, save_every=1), output_dir=tmp_path).train()
    other = Trainer(model, toy_examples(), fp32(max_steps=1, batch_size=2), output_dir=tmp_path)
    with pytest.raises(InvalidInputError, match="batch_size=3"):
        other.train(resume_from="latest")
    heads_only = Trainer(model, toy_examples(), fp32(max_steps=1, train_backbone=False), output_dir=tmp_path)
    with pytest.raises(InvalidInputError, match="train_backbone"):
        heads_only.train(resume_from="latest")
    (tmp_path / "broken").mkdir()
    with pytest.raises(CorruptIndexError, match="resume_from"):
        other.train(resume_from=tmp_path / "broken")


def test_matryoshka_heads_are_saved_and_selected_with_dim(model: TrainableColBERT, tmp_path: Path) -> None:
    # A narrower head starts as plain truncation of the main head, then trains on its own.
    assert torch.equal(model.heads["8"].weight, model.heads["16"].weight[:8])
    Trainer(model, toy_examples(), fp32(max_steps=2), output_dir=tmp_path).train()
    assert not torch.equal(model.heads["8"].weight, model.heads["16"].weight[:8])
    path = tmp_path / "model"
    config = json.loads((path / "config_sentence_transformers.json").read_text())
    assert config["matryoshka_heads"] == {"8": "1_Dense_8"}
    narrow = ColBERTEncoder.from_pretrained(path, device="cpu", precision="fp32", dim=8)
    assert narrow.dim == 8
    assert torch.equal(narrow.encode_documents(TOPICS[:2])[1], model.as_encoder(dim=8).encode_documents(TOPICS[:2])[1])
    assert ColBERTEncoder.from_pretrained(path, device="cpu", precision="fp32").dim == 16
    with pytest.raises(InvalidInputError, match=r"dim=5 .*other heads are \[8\]"):
        ColBERTEncoder.from_pretrained(path, device="cpu", dim=5)
    # Training goes on from the saved model with its trained heads, not fresh truncations.
    again = TrainableColBERT.from_pretrained(path, matryoshka_dims=(8, 4))
    assert again.dims == [16, 8, 4]
    assert torch.equal(again.heads["8"].weight, model.heads["8"].weight)
    assert torch.equal(again.heads["4"].weight, model.heads["16"].weight[:4])


def test_heads_can_learn_faster_than_the_backbone(model: TrainableColBERT, tmp_path: Path) -> None:
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    Trainer(
        model, toy_examples(), fp32(max_steps=2, learning_rate=1e-7, head_learning_rate=1e-3), output_dir=tmp_path
    ).train()

    def moved(prefix: str) -> float:
        return max((p - before[n]).abs().max().item() for n, p in model.named_parameters() if n.startswith(prefix))

    # AdamW moves each weight by about its learning rate per step.
    assert moved("heads.") > 1e-4 and moved("backbone.") < 1e-5, (moved("heads."), moved("backbone."))
    with pytest.raises(InvalidInputError, match="head_learning_rate"):
        TrainingConfig(head_learning_rate=0)


@pytest.mark.parametrize(("schedule", "expected"), [("linear", [0.5, 1.0, 2 / 3, 1 / 3]), ("constant", [0.5, 1, 1, 1])])
def test_schedule_warms_up_then_decays_or_holds(
    model: TrainableColBERT, tmp_path: Path, schedule: str, expected: list[float]
) -> None:
    config = fp32(max_steps=4, warmup_steps=1, learning_rate=1e-4, head_learning_rate=1e-3, schedule=schedule)
    trainer = Trainer(model, toy_examples(), config, output_dir=tmp_path)
    rates: list[float] = []
    for _ in range(4):
        rates.extend(trainer.scheduler.get_last_lr())
        trainer.optimizer.step()  # no gradients: nothing moves, only the schedule advances
        trainer.scheduler.step()
    assert rates == pytest.approx([rate * f for f in expected for rate in (1e-4, 1e-3)])
    with pytest.raises(InvalidInputError, match="schedule"):
        TrainingConfig(schedule="cosine")  # type: ignore[arg-type]


@pytest.mark.parametrize("cache_chunk_size", [None, 2])
def test_heads_only_training_leaves_the_backbone_and_skips_dropout(
    model: TrainableColBERT, tmp_path: Path, cache_chunk_size: int | None
) -> None:
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = fp32(max_steps=3, train_backbone=False, head_learning_rate=1e-2, cache_chunk_size=cache_chunk_size)
    trainer = Trainer(model, toy_examples(), config, output_dir=tmp_path)
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {
        id(p) for p in model.heads.parameters()
    }
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-2
    result = trainer.train()
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], before[n]) for n in before if n.startswith("backbone."))
    assert all(not torch.equal(after[n], before[n]) for n in before if n.startswith("heads."))
    assert result.losses[-1] < result.losses[0]
    # The transformer ran as at inference (no dropout): a frozen backbone's vectors do not depend on the RNG.
    assert not model.backbone.training and model.heads.training
    with pytest.raises(InvalidInputError, match="train_backbone"):
        TrainingConfig(train_backbone="no")  # type: ignore[arg-type]


def test_cached_loss_gives_the_plain_gradient(model: TrainableColBERT, tmp_path: Path) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    trainer = Trainer(model, toy_examples(), fp32(batch_size=6, negatives_per_query=1), output_dir=tmp_path)
    batch = trainer._collate(0, list(range(6)))
    plain_loss = trainer._plain_backward(batch, 1)
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    trainer.optimizer.zero_grad(set_to_none=True)
    cached_loss = trainer._cached_backward(batch, 1, chunk=4)
    assert cached_loss == pytest.approx(plain_loss, rel=1e-5)
    for name, grad in plain.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-3, atol=1e-5)


def test_distillation_with_bf16_autocast_and_gradient_checkpointing(model: TrainableColBERT, tmp_path: Path) -> None:
    # The teacher prefers the first topic and dislikes the third, for every query.
    rows = [{"query": q, "documents": [TOPICS[0], TOPICS[1], TOPICS[2]], "scores": [4.0, 0.0, -4.0]} for q in QUERIES]
    file = tmp_path / "distill.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in rows))
    examples = read_examples(file)
    assert examples[0].scores == (4.0, 0.0, -4.0)

    def margin() -> float:
        encoder = model.as_encoder()
        q, d = encoder.encode_queries(QUERIES), encoder.encode_documents([TOPICS[0], TOPICS[2]])
        scores = colbert_scores(torch.stack(q), torch.ones(len(q), q[0].shape[0], dtype=torch.bool),
                                torch.nn.utils.rnn.pad_sequence(d, batch_first=True),
                                torch.nn.utils.rnn.pad_sequence([torch.ones(len(x), dtype=torch.bool) for x in d],
                                                                batch_first=True))  # fmt: skip
        model.train()
        return float((scores[:, 0] - scores[:, 1]).mean())

    before = margin()
    config = fp32(loss="distillation", max_steps=8, precision="bf16", gradient_checkpointing=True, learning_rate=3e-3)
    trainer = Trainer(model, examples, config, output_dir=tmp_path)
    assert trainer.bf16 and any(getattr(m, "gradient_checkpointing", False) for m in model.backbone.modules())
    result = trainer.train()
    assert len(result.losses) == 8 and all(loss >= 0 for loss in result.losses)
    assert margin() > before + 0.5, before


def test_maxsim_scores_and_contrastive_loss_by_hand() -> None:
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one query, two tokens
    d = torch.tensor([[[-1.0, 0.0], [0.0, -1.0], [0.0, 0.0]], [[0.6, 0.8], [0.0, 0.0], [0.0, 0.0]]])
    d_mask = torch.tensor([[True, True, False], [True, False, False]])
    scores = colbert_scores(q, torch.ones(1, 2, dtype=torch.bool), d, d_mask)
    # Document 0: only negative similarities (padding must not win with 0): -0 + ... = 0 + 0? No: best of
    # token 1 is max(-1, 0) = 0, token 2 max(0, -1) = 0; document 1: 0.6 + 0.8.
    torch.testing.assert_close(scores, torch.tensor([[0.0, 1.4]]))
    loss = contrastive_loss(scores, torch.tensor([1]), temperature=0.5)
    torch.testing.assert_close(loss, -torch.log_softmax(torch.tensor([0.0, 2.8]), 0)[1])
    ignored = contrastive_loss(scores, torch.tensor([1]), ignore=torch.tensor([[True, False]]))
    assert float(ignored) == pytest.approx(0.0, abs=1e-6)


def beir_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(TOPICS)]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    queries = [{"_id": f"q{i}", "text": q} for i, q in enumerate(QUERIES)]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in range(len(QUERIES))]
    (folder / "qrels" / "train.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_beir_examples_mine_negatives_without_positives(tmp_path: Path, model: TrainableColBERT) -> None:
    folder = beir_folder(tmp_path)
    assert BM25(TOPICS).search("rivers of ice", k=1)[0][0] == 5
    # The model's own index ranks every document; BM25 only those sharing a word with the query.
    by_index = beir_examples(folder, negatives="index", n_negatives=3, encoder=model.as_encoder())
    by_bm25 = beir_examples(folder, negatives="bm25", n_negatives=3)
    for examples in (by_index, by_bm25):
        assert len(examples) == 6 and all(e.documents[0] not in e.documents[1:] for e in examples)
    assert all(len(e.documents) == 4 for e in by_index)
    assert by_bm25[3].documents == (TOPICS[3], TOPICS[5])  # "where do rivers go": only the glaciers share "rivers"
    # Precomputed rankings are used as given, minus the judged positives.
    mined = beir_examples(folder, query_ids=["q5"], mined={"q5": ["d5", "d3", "d0"]}, n_negatives=1)
    assert mined[0].documents == (TOPICS[5], TOPICS[3])
    train, held = split_queries([f"q{i}" for i in range(6)], 0.34, seed=1)
    assert (
        len(held) == 2
        and not set(train) & set(held)
        and split_queries([f"q{i}" for i in range(6)], 0.34, seed=1)[1] == held
    )


def test_bad_inputs_raise_typed_errors_naming_the_argument(model: TrainableColBERT, tmp_path: Path) -> None:
    bad_settings = [
        ("batch_size", 0),
        ("learning_rate", -1.0),
        ("loss", "triplet"),
        ("precision", "fp8"),
        ("cache_chunk_size", 0),
        ("max_grad_norm", float("nan")),
        ("negatives_per_query", -1),
    ]
    for field, value in bad_settings:
        with pytest.raises(InvalidInputError, match=field):
            TrainingConfig(**{field: value})
    with pytest.raises(InvalidInputError, match=r"matryoshka_dims\[1\]"):
        TrainableColBERT.from_pretrained(model.name_or_path, matryoshka_dims=(8, 0))
    with pytest.raises(InvalidInputError, match="query"):
        TrainingExample("  ", ("doc",))
    with pytest.raises(InvalidInputError, match="scores"):
        TrainingExample("q", ("a", "b"), (1.0,))
    with pytest.raises(InvalidInputError, match="teacher scores"):
        Trainer(model, toy_examples(), fp32(loss="distillation"), output_dir=tmp_path)
    with pytest.raises(InvalidInputError, match="head_weights"):
        Trainer(model, toy_examples(), fp32(head_weights=(1.0,)), output_dir=tmp_path)
    with pytest.raises(InvalidInputError, match="examples"):
        Trainer(model, [], fp32(), output_dir=tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "positive": "p", "negative": "n"}\n{"query": "q"}\n')
    with pytest.raises(CorruptIndexError, match=r"bad.jsonl:2"):
        read_examples(bad)
    with pytest.raises(InvalidInputError, match="negatives"):
        beir_examples(beir_folder(tmp_path), negatives="dense")  # type: ignore[arg-type]


def test_cli_train(tiny_pylate_path: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from lateint_plugins.core.cli import main

    folder = beir_folder(tmp_path)
    out = tmp_path / "run"
    args = ["train", str(folder), str(out), "--model", str(tiny_pylate_path), "--max-steps", "2", "--batch-size", "2",
            "--holdout", "0.34", "--matryoshka-dims", "8", "--precision", "fp32", "--learning-rate", "1e-4",
            "--save-every", "2"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "nDCG@10" in result.output and (out / "model" / "1_Dense_8").is_dir()
    assert (out / "checkpoints" / "step-0000002" / "trainer_state.json").is_file()
    triplets = tmp_path / "triplets.jsonl"
    rows = [{"query": q, "positive": t, "negatives": TOPICS[:2]} for q, t in zip(QUERIES, TOPICS, strict=True)]
    triplets.write_text("\n".join(json.dumps(r) for r in rows))
    args = ["train", str(triplets), str(tmp_path / "run2"), "--model", str(tiny_pylate_path), "--max-steps", "1"]
    result = CliRunner().invoke(main, [*args, "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    assert ColBERTEncoder.from_pretrained(tmp_path / "run2" / "model", device="cpu").dim == 16
    bad = CliRunner().invoke(main, ["train", str(folder), str(out), "--matryoshka-dims", "8,x"])
    assert bad.exit_code == 1 and "--matryoshka-dims" in bad.output
    bad = CliRunner().invoke(main, ["train", str(folder), str(out), "--split", "dev"])
    assert bad.exit_code == 1 and "split" in bad.output


def test_sentence_transformers_6_loads_a_trained_model(model: TrainableColBERT, tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers", reason="pip install 'sentence-transformers>=6.2' (in [test])")
    if int(st.__version__.split(".")[0]) < 6:
        pytest.skip(f"sentence-transformers >= 6 provides MultiVectorEncoder; found {st.__version__}")
    path = model.save(tmp_path / "model")
    reference = st.MultiVectorEncoder(str(path), device="cpu", local_files_only=True)
    ours = model.as_encoder()
    for a, b in zip(ours.encode_documents(TOPICS[:3]), reference.encode_document(TOPICS[:3]), strict=True):
        b = torch.nn.functional.normalize(torch.as_tensor(b).float(), dim=-1)
        assert a.shape == b.shape and float((a * b).sum(-1).min()) >= 0.9999
