"""A fitted gradient-boosting model flattened into arrays, for fast small predictions.

The autoscaler asks the model for a handful of rows (one origin, a few
horizons) every minute. scikit-learn walks its trees one Python call per tree,
about a millisecond per question whatever its size; walking every tree at once
with numpy does the same arithmetic in a tenth of that. Only what the
forecaster fits is supported: numeric features, one output, no categories.

The trees are read from scikit-learn's private attributes (it has no public
API for them), so pyproject.toml bounds scikit-learn below its next minor
release; should a release still move them, the ``Forest`` keeps the model and
answers through its public ``predict``: slower, never different.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gpufinops.core.forecast.series import FloatArray

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_NODE_FIELDS = {
    "value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right",
    "is_leaf", "depth", "is_categorical",
}  # fmt: skip
"""The fields of scikit-learn's tree node records read here."""


@dataclass(frozen=True, eq=False)
class Forest:
    """The trees of a fitted ``HistGradientBoostingRegressor``, all nodes in one table.

    A row goes left when its feature is ``<=`` the node's threshold, or when
    it is NaN and the node sends missing values left, exactly as scikit-learn
    decides; a leaf points to itself, so every walk takes ``depth`` steps.
    """

    baseline: float
    roots: IntArray
    feature: IntArray
    threshold: FloatArray
    missing_left: BoolArray
    left: IntArray
    right: IntArray
    value: FloatArray
    depth: int
    fallback: Any = None
    """The regressor itself when its trees could not be read (see the module's
    docstring): ``predict`` then asks it, and the arrays above are empty."""

    @classmethod
    def from_sklearn(cls, model: Any) -> "Forest":
        """Flatten a fitted regressor (one tree per iteration, no categorical splits);
        one whose private layout is not the one known here is kept whole instead."""
        predictors = getattr(model, "_predictors", None)
        if predictors is None:
            return cls._unflattened(model)
        tables: list[Any] = []
        for trees in predictors:
            if len(trees) != 1:
                raise ValueError("only single-output models can be flattened")
            nodes: Any = getattr(trees[0], "nodes", None)
            names = getattr(getattr(nodes, "dtype", None), "names", None) or ()
            if not _NODE_FIELDS.issubset(names):
                return cls._unflattened(model)
            if bool(np.any(nodes["is_categorical"])):
                raise ValueError("categorical splits are not supported")
            tables.append(nodes)
        if not tables:
            raise ValueError("the model has no trees")
        if not hasattr(model, "_baseline_prediction"):
            return cls._unflattened(model)
        sizes = np.array([t.shape[0] for t in tables], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        nodes = np.concatenate(tables)
        shift = np.repeat(offsets, sizes)
        own = np.arange(nodes.shape[0], dtype=np.int64)
        leaf = nodes["is_leaf"].astype(bool)
        return cls(
            baseline=float(np.ravel(model._baseline_prediction)[0]),
            roots=offsets,
            feature=np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64),
            threshold=np.asarray(nodes["num_threshold"], dtype=np.float64),
            missing_left=nodes["missing_go_to_left"].astype(bool),
            left=np.where(leaf, own, nodes["left"].astype(np.int64) + shift),
            right=np.where(leaf, own, nodes["right"].astype(np.int64) + shift),
            value=np.where(leaf, nodes["value"], 0.0).astype(np.float64),
            depth=int(nodes["depth"].max()),
        )

    @classmethod
    def _unflattened(cls, model: Any) -> "Forest":
        empty_int = np.zeros(0, dtype=np.int64)
        empty_float = np.zeros(0, dtype=np.float64)
        return cls(
            baseline=0.0,
            roots=empty_int,
            feature=empty_int,
            threshold=empty_float,
            missing_left=np.zeros(0, dtype=np.bool_),
            left=empty_int,
            right=empty_int,
            value=empty_float,
            depth=0,
            fallback=model,
        )

    def predict(self, x: FloatArray) -> FloatArray:
        """Raw predictions, one per row of ``x`` (the regressor's ``predict``)."""
        if self.fallback is not None:
            predicted: FloatArray = np.asarray(self.fallback.predict(x), dtype=np.float64)
            return predicted
        rows = np.arange(x.shape[0], dtype=np.int64)[:, None]
        node = np.broadcast_to(self.roots, (x.shape[0], self.roots.shape[0]))
        for _ in range(self.depth):
            seen = x[rows, self.feature[node]]
            below = seen <= self.threshold[node]
            go_left = np.where(np.isnan(seen), self.missing_left[node], below)
            node = np.where(go_left, self.left[node], self.right[node])
        out: FloatArray = self.baseline + self.value[node].sum(axis=1)
        return out
