"""Concept directions, after Latent Space Cartography (Liu et al. 2019): two groups of encoded
test images, A and B (two classes, or points picked on the map), give the axis
u = mean(B) − mean(A). A slider moves z along it, z ← z + (t − t(z))·u, where
t(z) = (z − mean(A))·u / |u|² is 0 at A's mean and 1 at B's (twinned in frontend/latent.js), and every
test image's t is drawn beside it. In the URL: ?concept=<mean A>;<mean B>, validated like z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorer.atlas import Atlas
from explorer.map_data import map_means
from explorer.params import MAX_PARAM_CHARS, format_latent, parse_latent

SELECTED = "points selected on the map"  # a group choice: the box or lasso selection


@dataclass(frozen=True)
class Concept:
    name: str  # "3 → 7"
    start: np.ndarray  # (D,) float32, mean of group A
    end: np.ndarray  # (D,) float32, mean of group B
    a_rows: tuple[int, ...] = ()  # the groups' map rows (none for a direction from the URL)
    b_rows: tuple[int, ...] = ()

    @property
    def direction(self) -> np.ndarray:
        """u = mean(B) − mean(A), (D,) float64."""
        return np.asarray(self.end, np.float64) - np.asarray(self.start, np.float64)

    def position(self, z: np.ndarray) -> float:
        """t(z): 0 at A's mean, 1 at B's."""
        u = self.direction
        return float((np.asarray(z, np.float64) - self.start) @ u / (u @ u))

    def move(self, z: np.ndarray, t: float) -> np.ndarray:
        """Z moved along u until its t is T (D,) float64; unclamped."""
        return np.asarray(z, np.float64) + (t - self.position(z)) * self.direction

    def projections(self, means: np.ndarray) -> np.ndarray:
        """t of each of MEANS (N, D) -> (N,) float64."""
        u = self.direction
        return (np.asarray(means, np.float64) - self.start) @ u / (u @ u)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "origin": [float(x) for x in self.start],
            "u": [float(x) for x in self.direction],
            "a_rows": list(self.a_rows),
            "b_rows": list(self.b_rows),
        }


def concept_from_groups(atlas: Atlas, a_rows: list[int], b_rows: list[int], name: str) -> Concept:
    """The concept from A_ROWS to B_ROWS, map rows (explorer/map_data.py). ValueError: a group is empty, or the two
    have the same mean (no direction)."""
    if not a_rows or not b_rows:
        raise ValueError("both groups need at least one point")
    start, end = map_means(atlas, a_rows).mean(axis=0), map_means(atlas, b_rows).mean(axis=0)
    if np.allclose(start, end, atol=1e-6):
        raise ValueError("the two groups have the same mean, so there is no direction between them")
    return Concept(name, start.astype(np.float32), end.astype(np.float32), tuple(a_rows), tuple(b_rows))


def group_rows(atlas: Atlas, choice: str, class_names: list[str], selected: list[int]) -> list[int]:
    """The atlas rows a group choice names: a class (by its name) or SELECTED, the points
    selected on the map."""
    if choice == SELECTED:
        return list(selected)
    label = class_names.index(choice)
    return np.flatnonzero(atlas.labels == label).tolist()


def group_choices(class_names: list[str]) -> list[str]:
    return [*class_names, SELECTED]


def format_concept(concept: Concept) -> str:
    return f"{format_latent(concept.start)};{format_latent(concept.end)}"


def parse_concept(text: str, low: np.ndarray, high: np.ndarray) -> tuple[Concept | None, list[str]]:
    """'<mean A>;<mean B>' (two latents as the URL's z) -> (Concept, warnings), each half
    validated and clamped as z is; None and a warning for anything unusable."""
    if len(text) > 2 * MAX_PARAM_CHARS:
        return None, ["The concept direction in the link is too long; it was left out."]
    halves = text.split(";")
    if len(halves) != 2:
        return None, ["The concept direction in the link is not two latents joined by ';'; it was left out."]
    ends, warnings = [], []
    for half in halves:
        z, said = parse_latent(half, low, high)
        if z is None:
            why = said[0].split(";")[0]  # parse_latent's reason, without what it does about it for z
            return None, [f"The concept direction in the link was left out: {why[0].lower()}{why[1:]}."]
        ends.append(z)
        warnings += [w.replace("latent values", "concept values") for w in said]
    if np.allclose(ends[0], ends[1], atol=1e-6):
        return None, ["The concept direction in the link has the same two ends; it was left out."]
    return Concept("the link's direction", ends[0], ends[1]), sorted(set(warnings))
