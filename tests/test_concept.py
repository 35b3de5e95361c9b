"""Concept directions (explorer/concept.py): two groups of encoded test images give an axis,
the slider moves z along it, and the URL carries it, validated like z."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.atlas import Atlas
from explorer.concept import SELECTED, concept_from_groups, format_concept, group_rows, parse_concept

LOW, HIGH = np.full(4, -3.0, np.float32), np.full(4, 3.0, np.float32)


def small_atlas() -> Atlas:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    centres = np.array([[0, 0, 0, 0], [2, 0, 0, 0], [0, 0, 2, -1]], np.float32)
    means = (centres[labels] + rng.normal(scale=0.1, size=(60, 4))).astype(np.float32)
    return Atlas(means=means, labels=labels, embedding=means[:, :2].copy(), index=np.arange(60))


def test_a_concept_between_two_classes_runs_from_one_mean_to_the_other() -> None:
    atlas = small_atlas()
    names = ["thin", "bold", "tilted"]
    a, b = group_rows(atlas, "thin", names, []), group_rows(atlas, "bold", names, [])
    assert a == list(range(20)) and b == list(range(20, 40))
    concept = concept_from_groups(atlas, a, b, "thin → bold")
    np.testing.assert_allclose(concept.direction, atlas.means[20:40].mean(0) - atlas.means[:20].mean(0), atol=1e-6)
    assert concept.position(concept.start) == pytest.approx(0) and concept.position(concept.end) == pytest.approx(1)
    # moving z to t keeps every direction of z orthogonal to u
    z = np.array([0.5, 1.0, -2.0, 0.3])
    moved = concept.move(z, 0.75)
    assert concept.position(moved) == pytest.approx(0.75)
    u = concept.direction / np.linalg.norm(concept.direction)
    np.testing.assert_allclose((moved - z) - ((moved - z) @ u) * u, 0, atol=1e-9)
    t = concept.projections(atlas.means)
    assert t[:20].mean() == pytest.approx(0, abs=1e-6) and t[20:40].mean() == pytest.approx(1, abs=1e-6)
    json = concept.to_json()
    assert json["name"] == "thin → bold" and json["a_rows"] == a and len(json["u"]) == 4


def test_selected_points_make_a_group_and_empty_or_equal_groups_are_refused() -> None:
    atlas = small_atlas()
    assert group_rows(atlas, SELECTED, ["x"], [3, 7]) == [3, 7]
    with pytest.raises(ValueError, match="at least one point"):
        concept_from_groups(atlas, [], [1, 2], "empty")
    with pytest.raises(ValueError, match="same mean"):
        concept_from_groups(atlas, [1, 2], [2, 1], "same")


def test_a_concept_round_trips_through_the_url_and_garbage_is_refused_with_a_sentence() -> None:
    atlas = small_atlas()
    concept = concept_from_groups(atlas, list(range(20)), list(range(40, 60)), "a → c")
    parsed, warnings = parse_concept(format_concept(concept), LOW, HIGH)
    assert warnings == [] and parsed is not None
    np.testing.assert_allclose(parsed.start, concept.start, atol=5e-4)
    np.testing.assert_allclose(parsed.end, concept.end, atol=5e-4)
    for text, said in [
        ("1,2,3,4", "not two latents"),
        ("1,2,3;4,5,6,7", "gives 3 latent values"),
        ("a,b,c,d;1,2,3,4", "not a list of numbers"),
        ("nan,0,0,0;1,1,1,1", "NaN or infinity"),
        ("1,1,1,1;1,1,1,1", "same two ends"),
        ("1;" * 3000, "too long"),
    ]:
        parsed, warnings = parse_concept(text, LOW, HIGH)
        assert parsed is None and len(warnings) == 1 and said in warnings[0], (text[:20], warnings)
        assert "using the origin" not in warnings[0]
    parsed, warnings = parse_concept("9,0,0,0;0,0,0,0", LOW, HIGH)
    assert parsed.start[0] == 3.0 and warnings == [
        "Some concept values in the link were outside the sliders' range and were clamped."
    ]
