"""Tests for :mod:`lateint_plugins.core.evaluation`: hand-computed metrics and the BEIR loader."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest
from lateint_plugins.core.errors import CorruptIndexError, InvalidInputError, LateInteractionError
from lateint_plugins.core.evaluation import (
    BeirDataset,
    evaluate,
    load_beir,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"

# 1 / log2(3): the discount at rank 2.
D2 = 1 / math.log2(3)


# --------------------------------------------------------------------------------------------
# nDCG
# --------------------------------------------------------------------------------------------


class TestNdcg:
    def test_binary_two_hits(self) -> None:
        # Relevant: a, b. Ranking x, a, y, b -> hits at ranks 2 and 4.
        # DCG  = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061606
        # IDCG = 1/log2(2) + 1/log2(3) = 1        + 0.630930 = 1.630930
        # nDCG = 1.061606 / 1.630930 = 0.650921
        qrels = {"a": 1, "b": 1}
        assert ndcg_at_k(["x", "a", "y", "b"], qrels, 10) == pytest.approx(0.650921, abs=1e-6)

    def test_graded(self) -> None:
        # Judgments a=3, b=2, c=1, z=0 (judged, not relevant). Ranking c, a, z, b; k=3.
        # DCG@3  = 1/log2(2) + 3/log2(3) + 0/log2(4)   = 1 + 1.892789       = 2.892789
        # IDCG@3 = 3/log2(2) + 2/log2(3) + 1/log2(4)   = 3 + 1.261860 + 0.5 = 4.761860
        # nDCG@3 = 2.892789 / 4.761860 = 0.607492  (b at rank 4 is cut off)
        qrels = {"a": 3, "b": 2, "c": 1, "z": 0}
        assert ndcg_at_k(["c", "a", "z", "b"], qrels, 3) == pytest.approx(0.607492, abs=1e-6)
        assert ndcg_at_k(["c", "a", "z", "b"], qrels, 3) == pytest.approx((1 + 3 * D2) / (3 + 2 * D2 + 0.5))

    def test_perfect_ranking_is_one(self) -> None:
        assert ndcg_at_k(["a", "b", "c"], {"a": 3, "b": 2, "c": 1}, 10) == pytest.approx(1.0)

    def test_wrong_order_of_grades_is_below_one(self) -> None:
        # Swapping grades: DCG = 2 + 3/log2(3); IDCG = 3 + 2/log2(3).
        value = ndcg_at_k(["b", "a"], {"a": 3, "b": 2}, 10)
        assert value == pytest.approx((2 + 3 * D2) / (3 + 2 * D2))
        assert value < 1.0

    def test_cutoff_excludes_hit(self) -> None:
        assert ndcg_at_k(["x", "a"], {"a": 1}, 1) == 0.0
        assert ndcg_at_k(["x", "a"], {"a": 1}, 2) == pytest.approx(D2)

    def test_ideal_is_truncated_at_k(self) -> None:
        # Three relevant docs but k=1: IDCG@1 = 1, so a hit at rank 1 is perfect.
        assert ndcg_at_k(["a"], {"a": 1, "b": 1, "c": 1}, 1) == pytest.approx(1.0)

    def test_unjudged_and_nonpositive_docs_carry_no_gain(self) -> None:
        # Negative and zero judgments are non-relevant: only a counts. DCG = 1/log2(4) = 0.5, IDCG = 1.
        assert ndcg_at_k(["neg", "zero", "a"], {"a": 1, "neg": -1, "zero": 0}, 10) == pytest.approx(0.5)

    def test_no_relevant_documents_scores_zero(self) -> None:
        assert ndcg_at_k(["a"], {"a": 0, "b": -1}, 10) == 0.0
        assert ndcg_at_k(["a"], {}, 10) == 0.0

    def test_empty_ranking_scores_zero(self) -> None:
        assert ndcg_at_k([], {"a": 1}, 10) == 0.0


# --------------------------------------------------------------------------------------------
# Recall and MRR
# --------------------------------------------------------------------------------------------


class TestRecall:
    QRELS: ClassVar[dict[str, int]] = {"a": 1, "b": 2, "c": 1, "d": 0}  # three relevant; d is not

    def test_partial_hits(self) -> None:
        # Top 4 = a, x, d, c -> a and c found (d does not count): 2/3.
        assert recall_at_k(["a", "x", "d", "c", "b"], self.QRELS, 4) == pytest.approx(2 / 3)

    def test_all_found_within_k(self) -> None:
        assert recall_at_k(["a", "x", "d", "c", "b"], self.QRELS, 5) == pytest.approx(1.0)

    def test_cutoff_excludes_hits(self) -> None:
        assert recall_at_k(["x", "a", "c"], self.QRELS, 1) == 0.0
        assert recall_at_k(["x", "a", "c"], self.QRELS, 2) == pytest.approx(1 / 3)

    def test_k_larger_than_ranking(self) -> None:
        assert recall_at_k(["b"], self.QRELS, 100) == pytest.approx(1 / 3)

    def test_grades_do_not_weight_recall(self) -> None:
        # b has grade 2 but counts as one relevant document.
        assert recall_at_k(["b"], self.QRELS, 1) == recall_at_k(["a"], self.QRELS, 1)

    def test_no_relevant_documents_scores_zero(self) -> None:
        assert recall_at_k(["a"], {"a": 0}, 10) == 0.0


class TestMrr:
    def test_first_hit_at_rank_three(self) -> None:
        assert mrr_at_k(["x", "y", "a", "b"], {"a": 1, "b": 2}, 10) == pytest.approx(1 / 3)

    def test_only_first_hit_counts(self) -> None:
        assert mrr_at_k(["a", "b"], {"a": 1, "b": 1}, 10) == 1.0

    def test_cutoff_excludes_hit(self) -> None:
        assert mrr_at_k(["x", "y", "a"], {"a": 1}, 2) == 0.0

    def test_nonrelevant_judgment_is_skipped(self) -> None:
        assert mrr_at_k(["z", "a"], {"z": 0, "a": 1}, 10) == pytest.approx(0.5)

    def test_no_hit_scores_zero(self) -> None:
        assert mrr_at_k(["x", "y"], {"a": 1}, 10) == 0.0


# --------------------------------------------------------------------------------------------
# evaluate()
# --------------------------------------------------------------------------------------------


class TestEvaluate:
    QRELS: ClassVar[dict[str, dict[str, int]]] = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"d": 1}}

    def test_averages_over_every_judged_query(self) -> None:
        # q1: [a]    -> nDCG 1,                       recall 1,   MRR 1
        # q2: [x, b] -> nDCG (1/log2 3)/(1+1/log2 3), recall 1/2, MRR 1/2
        # q3: missing from the run -> 0 on every metric
        # q9 is not judged and is ignored.
        run = {"q1": ["a"], "q2": ["x", "b"], "q9": ["a", "b", "c"]}
        scores = evaluate(run, self.QRELS, metrics=("ndcg@10", "recall@100", "mrr@10"))
        assert set(scores) == {"ndcg@10", "recall@100", "mrr@10"}
        q2_ndcg = D2 / (1 + D2)  # 0.386853
        assert scores["ndcg@10"] == pytest.approx((1 + q2_ndcg) / 3)  # 0.462284
        assert scores["recall@100"] == pytest.approx((1 + 0.5) / 3)
        assert scores["mrr@10"] == pytest.approx((1 + 0.5) / 3)

    def test_missing_query_scores_zero(self) -> None:
        full = evaluate({"q1": ["a"], "q2": ["b", "c"], "q3": ["d"]}, self.QRELS, ["recall@10"])
        partial = evaluate({"q1": ["a"], "q2": ["b", "c"]}, self.QRELS, ["recall@10"])
        assert full["recall@10"] == pytest.approx(1.0)
        assert partial["recall@10"] == pytest.approx(2 / 3)
        assert evaluate({}, self.QRELS, ["ndcg@10"]) == {"ndcg@10": 0.0}

    def test_query_without_relevant_docs_counts_as_zero(self) -> None:
        # pytrec_eval convention: the query stays in the average with score 0.
        qrels = {"q1": {"a": 1}, "q2": {"b": 0}}
        assert evaluate({"q1": ["a"], "q2": ["b"]}, qrels, ["mrr@10"]) == {"mrr@10": pytest.approx(0.5)}

    def test_cutoffs_differ(self) -> None:
        scores = evaluate({"q1": ["x", "y", "a"]}, {"q1": {"a": 1}}, ["mrr@2", "mrr@3", "recall@2"])
        assert scores == {"mrr@2": 0.0, "mrr@3": pytest.approx(1 / 3), "recall@2": 0.0}

    def test_default_metrics(self) -> None:
        assert set(evaluate({"q1": ["a"]}, {"q1": {"a": 1}})) == {"ndcg@10", "recall@100", "mrr@10"}

    def test_metric_names_are_case_insensitive_and_single_string_allowed(self) -> None:
        assert evaluate({"q1": ["a"]}, {"q1": {"a": 1}}, " NDCG@5 ") == {"ndcg@5": pytest.approx(1.0)}

    def test_matches_single_query_functions(self) -> None:
        run = {"q1": ["c", "a", "z", "b"]}
        qrels = {"q1": {"a": 3, "b": 2, "c": 1, "z": 0}}
        scores = evaluate(run, qrels, ["ndcg@3", "recall@3", "mrr@3"])
        assert scores["ndcg@3"] == pytest.approx(ndcg_at_k(run["q1"], qrels["q1"], 3))
        assert scores["recall@3"] == pytest.approx(recall_at_k(run["q1"], qrels["q1"], 3))
        assert scores["mrr@3"] == pytest.approx(mrr_at_k(run["q1"], qrels["q1"], 3))

    def test_accepts_tuples_as_rankings(self) -> None:
        assert evaluate({"q1": ("x", "a")}, {"q1": {"a": 1}}, ["mrr@10"]) == {"mrr@10": 0.5}


class TestMetricErrors:
    @pytest.mark.parametrize(
        ("metric", "fragment"),
        [
            ("foo@10", "unknown metric 'foo@10'"),
            ("map@10", "unknown metric"),
            ("ndcg@0", "positive integer"),
            ("ndcg@-3", "positive integer"),
            ("ndcg@ten", "positive integer"),
            ("ndcg", "needs a cutoff"),
        ],
    )
    def test_bad_metric_names(self, metric: str, fragment: str) -> None:
        with pytest.raises(InvalidInputError, match=fragment):
            evaluate({"q1": ["a"]}, {"q1": {"a": 1}}, [metric])

    def test_unknown_metric_lists_supported(self) -> None:
        with pytest.raises(InvalidInputError, match=r"ndcg@k, recall@k, mrr@k"):
            evaluate({}, {"q1": {"a": 1}}, ["foo@10"])

    def test_errors_share_the_library_base_and_value_error(self) -> None:
        with pytest.raises(LateInteractionError):
            evaluate({}, {"q1": {"a": 1}}, ["foo@10"])
        with pytest.raises(ValueError):
            evaluate({}, {"q1": {"a": 1}}, ["foo@10"])

    def test_no_metrics(self) -> None:
        with pytest.raises(InvalidInputError, match="metrics"):
            evaluate({}, {"q1": {"a": 1}}, [])

    def test_empty_qrels(self) -> None:
        with pytest.raises(InvalidInputError, match="qrels"):
            evaluate({"q1": ["a"]}, {}, ["ndcg@10"])

    def test_run_not_a_mapping(self) -> None:
        with pytest.raises(InvalidInputError, match="run"):
            evaluate(cast(Any, [["a"]]), {"q1": {"a": 1}}, ["ndcg@10"])

    @pytest.mark.parametrize("func", [ndcg_at_k, recall_at_k, mrr_at_k])
    @pytest.mark.parametrize("k", [0, -1, 2.5, True, "10"])
    def test_bad_k(self, func: object, k: object) -> None:
        with pytest.raises(InvalidInputError, match="k: expected a positive integer"):
            func(["a"], {"a": 1}, k)  # type: ignore[operator]

    @pytest.mark.parametrize("func", [ndcg_at_k, recall_at_k, mrr_at_k])
    def test_string_ranking_rejected(self, func: object) -> None:
        # "ab" would otherwise be read as the ranking ["a", "b"].
        with pytest.raises(InvalidInputError, match="ranked_ids: expected a sequence"):
            func("ab", {"a": 1}, 10)  # type: ignore[operator]

    def test_duplicate_ids_rejected(self) -> None:
        # Duplicates would let recall exceed 1; the error names the query.
        with pytest.raises(InvalidInputError, match=r"run\['q1'\].*'a' appears more than once"):
            evaluate({"q1": ["a", "a"]}, {"q1": {"a": 1}}, ["recall@10"])

    def test_non_string_ids_rejected(self) -> None:
        with pytest.raises(InvalidInputError, match="must be strings"):
            recall_at_k(cast(Any, [1, 2]), {"1": 1}, 10)

    def test_qrels_for_query_must_be_mapping(self) -> None:
        with pytest.raises(InvalidInputError, match="qrels_for_query"):
            ndcg_at_k(["a"], cast(Any, ["a"]), 10)


# --------------------------------------------------------------------------------------------
# load_beir on a tiny folder
# --------------------------------------------------------------------------------------------

CORPUS = [
    {"_id": "d1", "title": "Cats", "text": "Cats purr."},
    {"_id": "d2", "title": "", "text": "Dogs bark."},
    {"_id": "d3", "title": "Birds", "text": "Birds sing."},
    {"_id": "d4", "title": "Fish", "text": "Fish swim."},
]
QUERIES = [
    {"_id": "q1", "text": "what purrs"},
    {"_id": "q2", "text": "what barks"},
    {"_id": "q3", "text": "what sings"},
    {"_id": "q4", "text": "an unjudged query"},
]
TEST_QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td4\t0\n"
TRAIN_QRELS = "query-id\tcorpus-id\tscore\nq3\td3\t1\n"


def _write_jsonl(path: Path, records: Sequence[Mapping[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    _write_jsonl(root / "corpus.jsonl", CORPUS)
    _write_jsonl(root / "queries.jsonl", QUERIES)
    (root / "qrels" / "test.tsv").write_text(TEST_QRELS, encoding="utf-8")
    (root / "qrels" / "train.tsv").write_text(TRAIN_QRELS, encoding="utf-8")
    return root


class TestLoadBeir:
    def test_test_split_keeps_only_judged_queries(self, beir_dir: Path) -> None:
        data = load_beir(beir_dir, split="test")
        assert isinstance(data, BeirDataset)
        assert data.queries == {"q1": "what purrs", "q2": "what barks"}
        assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d4": 0}}
        assert list(data.corpus) == ["d1", "d2", "d3", "d4"]
        assert data.corpus["d1"] == {"title": "Cats", "text": "Cats purr."}
        assert (data.name, data.split) == ("tiny", "test")
        assert (data.num_documents, data.num_queries, data.num_judged_pairs) == (4, 2, 3)

    def test_train_split(self, beir_dir: Path) -> None:
        data = load_beir(str(beir_dir), split="train")
        assert data.queries == {"q3": "what sings"}
        assert data.qrels == {"q3": {"d3": 1}}
        assert data.split == "train"

    def test_default_split_is_test(self, beir_dir: Path) -> None:
        assert set(load_beir(beir_dir).queries) == {"q1", "q2"}

    def test_document_texts_join_title_and_text(self, beir_dir: Path) -> None:
        ids, texts = load_beir(beir_dir).document_texts()
        assert ids == ["d1", "d2", "d3", "d4"]
        # An empty title leaves no leading space.
        assert texts == ["Cats Cats purr.", "Dogs bark.", "Birds Birds sing.", "Fish Fish swim."]

    def test_query_texts(self, beir_dir: Path) -> None:
        assert load_beir(beir_dir).query_texts() == (["q1", "q2"], ["what purrs", "what barks"])

    def test_queries_follow_qrels_order(self, beir_dir: Path) -> None:
        (beir_dir / "qrels" / "test.tsv").write_text("q2\td2\t1\nq1\td1\t1\n", encoding="utf-8")
        assert list(load_beir(beir_dir).queries) == ["q2", "q1"]

    def test_repr_shows_counts_not_contents(self, beir_dir: Path) -> None:
        text = repr(load_beir(beir_dir))
        assert text == "BeirDataset(name='tiny', split='test', documents=4, queries=2, judged_pairs=3)"

    def test_end_to_end_with_evaluate(self, beir_dir: Path) -> None:
        data = load_beir(beir_dir)
        scores = evaluate({"q1": ["d1"], "q2": ["d4", "d2"]}, data.qrels, ["mrr@10"])
        assert scores == {"mrr@10": pytest.approx((1 + 0.5) / 2)}

    def test_qrels_without_header_and_with_blank_lines(self, beir_dir: Path) -> None:
        (beir_dir / "qrels" / "test.tsv").write_text("q1\td1\t1\n\nq2\td2\t1\n\n", encoding="utf-8")
        assert load_beir(beir_dir).qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}

    def test_numeric_json_ids_become_strings(self, beir_dir: Path) -> None:
        _write_jsonl(beir_dir / "corpus.jsonl", [{"_id": 7, "title": "T", "text": "x"}])
        (beir_dir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t7\t1\n", "utf-8")
        data = load_beir(beir_dir)
        assert list(data.corpus) == ["7"]
        assert data.qrels == {"q1": {"7": 1}}

    def test_missing_title_defaults_to_empty(self, beir_dir: Path) -> None:
        _write_jsonl(beir_dir / "corpus.jsonl", [{"_id": "d1", "text": "only text"}])
        assert load_beir(beir_dir).document_texts() == (["d1"], ["only text"])

    def test_judged_document_missing_from_corpus_warns(self, beir_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
        (beir_dir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tgone\t1\n", "utf-8")
        with caplog.at_level(logging.WARNING, logger="lateint_plugins.core.evaluation"):
            data = load_beir(beir_dir)
        assert data.qrels == {"q1": {"gone": 1}}
        assert "not in" in caplog.text and "'gone'" in caplog.text


class TestLoadBeirErrors:
    def test_missing_folder(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidInputError, match=r"path: .*nowhere.* is not a folder"):
            load_beir(tmp_path / "nowhere")

    def test_missing_split_lists_available(self, beir_dir: Path) -> None:
        with pytest.raises(InvalidInputError, match=r"split 'dev'.*available splits: 'test', 'train'"):
            load_beir(beir_dir, split="dev")

    @pytest.mark.parametrize("split", ["", "  ", "../test", 3])
    def test_bad_split_argument(self, beir_dir: Path, split: object) -> None:
        with pytest.raises(InvalidInputError, match="split"):
            load_beir(beir_dir, split=cast(Any, split))

    @pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl"])
    def test_missing_file(self, beir_dir: Path, name: str) -> None:
        (beir_dir / name).unlink()
        with pytest.raises(InvalidInputError, match=f"no {name}"):
            load_beir(beir_dir)

    def test_missing_qrels_folder(self, beir_dir: Path) -> None:
        for file in (beir_dir / "qrels").iterdir():
            file.unlink()
        (beir_dir / "qrels").rmdir()
        with pytest.raises(InvalidInputError, match="no qrels/ folder"):
            load_beir(beir_dir)

    def test_malformed_json_line_names_file_and_line(self, beir_dir: Path) -> None:
        lines = [json.dumps(r) for r in CORPUS]
        lines.insert(2, '{"_id": "bad", "text": ')  # becomes line 3
        (beir_dir / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        with pytest.raises(CorruptIndexError, match=r"corpus\.jsonl, line 3: invalid JSON"):
            load_beir(beir_dir)

    def test_json_line_that_is_not_an_object(self, beir_dir: Path) -> None:
        (beir_dir / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n["q2"]\n', encoding="utf-8")
        with pytest.raises(CorruptIndexError, match=r"queries\.jsonl, line 2: expected a JSON object"):
            load_beir(beir_dir)

    def test_missing_text_field(self, beir_dir: Path) -> None:
        _write_jsonl(beir_dir / "corpus.jsonl", [{"_id": "d1", "title": "no text"}])
        with pytest.raises(CorruptIndexError, match=r"corpus\.jsonl, line 1: 'text' must be a string"):
            load_beir(beir_dir)

    def test_missing_id(self, beir_dir: Path) -> None:
        _write_jsonl(beir_dir / "queries.jsonl", [{"text": "no id"}])
        with pytest.raises(CorruptIndexError, match=r"queries\.jsonl, line 1: '_id'"):
            load_beir(beir_dir)

    def test_duplicate_document_id(self, beir_dir: Path) -> None:
        _write_jsonl(beir_dir / "corpus.jsonl", [*CORPUS, CORPUS[0]])
        with pytest.raises(CorruptIndexError, match=r"line 5: duplicate document id 'd1' \(first on line 1\)"):
            load_beir(beir_dir)

    @pytest.mark.parametrize(
        ("content", "fragment"),
        [
            ("query-id\tcorpus-id\tscore\nq1\td1\n", r"test\.tsv, line 2: expected 3 tab-separated fields"),
            ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\thigh\n", r"line 3: score must be an integer"),
            ("query-id\tcorpus-id\tscore\nq1 d1 1\n", r"line 2: expected 3 tab-separated fields"),
            ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t0\n", r"line 3: duplicate judgment"),
            ("query-id\tcorpus-id\tscore\n", r"no judgments found"),
        ],
    )
    def test_malformed_qrels(self, beir_dir: Path, content: str, fragment: str) -> None:
        (beir_dir / "qrels" / "test.tsv").write_text(content, encoding="utf-8")
        with pytest.raises(CorruptIndexError, match=fragment):
            load_beir(beir_dir)

    def test_judged_query_missing_from_queries(self, beir_dir: Path) -> None:
        (beir_dir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq99\td1\t1\n", "utf-8")
        with pytest.raises(CorruptIndexError, match=r"judged query id\(s\) are not in .*'q99'"):
            load_beir(beir_dir)

    def test_invalid_utf8(self, beir_dir: Path) -> None:
        (beir_dir / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "\xff"}\n')
        with pytest.raises(CorruptIndexError, match="not valid UTF-8"):
            load_beir(beir_dir)

    def test_dataset_rejects_qrels_without_query_text(self) -> None:
        with pytest.raises(InvalidInputError, match="'q2'"):
            BeirDataset(corpus={}, queries={"q1": "a"}, qrels={"q1": {"d": 1}, "q2": {"d": 1}})


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"SciFact not found at {SCIFACT} (shared/data is not checked out)")
def test_scifact_counts() -> None:
    data = load_beir(SCIFACT, split="test")
    assert (data.num_documents, data.num_queries, data.num_judged_pairs) == (5183, 300, 339)
    ids, texts = data.document_texts()
    assert len(ids) == len(set(ids)) == 5183
    assert all(texts)
    # Test and train queries are disjoint: none of the 809 train queries leak into the test split.
    train = load_beir(SCIFACT, split="train")
    assert train.num_queries == 809
    assert not set(train.queries) & set(data.queries)
    # A perfect run scores 1 on every metric.
    perfect = {qid: [d for d, s in judged.items() if s > 0] for qid, judged in data.qrels.items()}
    assert evaluate(perfect, data.qrels) == pytest.approx({"ndcg@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0})


# --------------------------------------------------------------------------------------------
# Sample data shipped for the CLI demo
# --------------------------------------------------------------------------------------------


def _package_jsonl(name: str) -> list[dict[str, object]]:
    text = resources.files("lateint_plugins.core").joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_sample_corpus_is_valid() -> None:
    docs = _package_jsonl("sample_corpus.jsonl")
    assert len(docs) == 40
    assert [d["_id"] for d in docs] == [f"d{i:02d}" for i in range(1, 41)]
    for doc in docs:
        assert set(doc) == {"_id", "title", "text", "topic"}
        assert all(isinstance(doc[key], str) and doc[key] for key in doc)
    assert len({d["topic"] for d in docs}) >= 8


def test_sample_queries_are_valid() -> None:
    queries = _package_jsonl("sample_queries.jsonl")
    assert [q["_id"] for q in queries] == ["q1", "q2", "q3", "q4", "q5"]
    assert all(isinstance(q["text"], str) and q["text"].strip() for q in queries)
