"""nDCG and recall, checked against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from search.evaluation import evaluate, ndcg_at_k, read_qrels, read_queries, recall_at_k


def test_perfect_ranking_scores_one() -> None:
    assert ndcg_at_k(["a", "b", "c"], {"a": 2, "b": 1}) == pytest.approx(1.0)


def test_graded_ndcg_by_hand() -> None:
    # ranking b (gain 1), x (0), a (gain 3); ideal a (3), b (1)
    expected = (1 / math.log2(2) + 3 / math.log2(4)) / (3 / math.log2(2) + 1 / math.log2(3))
    assert ndcg_at_k(["b", "x", "a"], {"a": 2, "b": 1}) == pytest.approx(expected)


def test_cutoff_ignores_lower_ranks() -> None:
    assert ndcg_at_k(["x"] * 10 + ["a"], {"a": 1}) == 0.0


def test_no_positive_label_scores_zero() -> None:
    assert ndcg_at_k(["a"], {"a": 0}) == 0.0


def test_recall_counts_only_the_grade_asked() -> None:
    labels = {"a": 2, "b": 1, "c": 2}
    assert recall_at_k(["a", "b"], labels, 100, min_grade=2) == pytest.approx(0.5)
    assert recall_at_k(["a", "b"], labels, 100, min_grade=1) == pytest.approx(2 / 3)
    assert recall_at_k(["b", "a"], labels, 1, min_grade=2) == 0.0


def test_evaluate_skips_unjudged_queries() -> None:
    quality = evaluate({"q1": ["a"], "q2": ["z"]}, {"q1": {"a": 1}})
    assert quality.queries == 1 and quality.ndcg_at_10 == pytest.approx(1.0)


def test_readers_parse_beir_tsv(tmp_path: Path) -> None:
    (tmp_path / "q.tsv").write_text("qid\tquery\nq1\tred shoes\nq2\tblue \"quoted\" bag\n")
    (tmp_path / "r.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t1\n")
    assert read_queries(tmp_path / "q.tsv") == {"q1": "red shoes", "q2": 'blue "quoted" bag'}
    assert read_qrels(tmp_path / "r.tsv") == {"q1": {"d1": 2, "d2": 1}}


def test_ann_recall_counts_ties_as_found() -> None:
    import numpy as np

    from search.evaluation import ann_recall

    exact = np.array([[0.9, 0.8, 0.8, 0.7]])
    assert ann_recall(exact, np.array([[0.9, 0.8, 0.8, 0.7]]), 3) == 1.0  # same scores, any ids
    assert ann_recall(exact, np.array([[0.9, 0.8, 0.6, 0.5]]), 3) == pytest.approx(2 / 3)
    assert ann_recall(exact, np.array([[0.7, 0.6, -np.inf, -np.inf]]), 3) == 0.0
