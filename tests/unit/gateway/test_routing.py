from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from serving.gateway.config import RouteConfig
from serving.gateway.routing import Route, top_classes, vote


def test_weighted_choice_and_sticky_keys() -> None:
    route = Route("canary", RouteConfig(split={"cnn": 90, "cnn_int8": 10}))
    assert route.primary == "cnn"
    counts = Counter(route.choose(f"user-{i}") for i in range(10_000))
    assert 850 <= counts["cnn_int8"] <= 1150
    assert all(route.choose(f"user-{i}") == route.choose(f"user-{i}") for i in range(100))
    only = Route("only", RouteConfig(split={"a": 0, "b": 1}))
    assert {only.choose(None) for _ in range(100)} == {"b"}


def test_shadow_fraction() -> None:
    assert not Route("r", RouteConfig(split={"a": 1})).mirror()
    assert Route("r", RouteConfig(split={"a": 1}, shadow="b")).mirror()
    assert not Route("r", RouteConfig(split={"a": 1}, shadow="b", shadow_fraction=0)).mirror()


P = [
    np.array([[0.6, 0.4, 0.0], [0.1, 0.2, 0.7]], np.float32),
    np.array([[0.1, 0.9, 0.0], [0.1, 0.5, 0.4]], np.float32),
    np.array([[0.2, 0.7, 0.1], [0.0, 0.6, 0.4]], np.float32),
]


def test_soft_vote_averages() -> None:
    probabilities, classes = vote(P, "soft")
    np.testing.assert_allclose(probabilities[0], [0.3, 2 / 3, 1 / 30], rtol=1e-6)
    assert classes.tolist() == [1, 2]
    assert probabilities.dtype == np.float32 and classes.dtype == np.int64


def test_hard_vote_counts_and_breaks_ties_by_probability() -> None:
    _, classes = vote(P, "hard")
    assert classes.tolist() == [1, 1]  # row 1: votes 2, 1, 1 -> class 1 wins two to one (soft says 2)
    tie = [np.array([[0.9, 0.1]], np.float32), np.array([[0.4, 0.6]], np.float32)]
    assert vote(tie, "hard")[1].tolist() == [0]  # one vote each; 0 has the higher mean


def test_weighted_vote() -> None:
    _, classes = vote(P[:2], "weighted", [5.0, 1.0])
    assert classes.tolist() == [0, 2]
    with pytest.raises(ValueError):
        vote(P, "weighted")


def test_top_classes_reads_class_id_or_probabilities() -> None:
    assert top_classes({"class_id": np.array([4, 2], np.int64)}).tolist() == [4, 2]
    assert top_classes({"probabilities": P[0]}).tolist() == [0, 2]
    assert top_classes({"other": P[0]}) is None
