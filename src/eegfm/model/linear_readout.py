"""A fitted linear readout of window features: standardization, then a (multinomial or binary)
logistic regression, held as plain arrays.

The benchmark fits it with scikit-learn (``StandardScaler`` then ``LogisticRegression``) and
predicts through this class, so an exported readout (``model.fused``) answers exactly what the
benchmark scored. State: the scaler's ``mean``/``scale`` [F], the regression's ``coef`` [K, F] and
``intercept`` [K], and ``classes`` [K'] (the class indices the fit saw; a class absent from
training keeps probability 0). With two classes seen, scikit-learn keeps one row of
coefficients, for the second class.
"""

from __future__ import annotations

import dataclasses

import numpy as np

_ABSENT_MARGIN = 30.0  # log-odds below the lowest seen class: probability ~1e-13, finite in float32


@dataclasses.dataclass(frozen=True)
class LinearReadout:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray
    n_classes: int

    def __post_init__(self) -> None:
        n_features = len(self.mean)
        if self.scale.shape != (n_features,) or self.coef.ndim != 2 or self.coef.shape[1] != n_features:
            raise ValueError(
                f"readout: expected mean and scale [F] and coef [K, F] of one F; got {self.mean.shape}, "
                f"{self.scale.shape}, {self.coef.shape}"
            )
        binary = len(self.classes) == 2 and len(self.coef) == 1
        if not binary and len(self.coef) != len(self.classes):
            raise ValueError(f"readout: expected one coefficient row per class seen; got {self.coef.shape}")
        if len(self.intercept) != len(self.coef) or not all(0 <= c < self.n_classes for c in self.classes):
            raise ValueError(f"readout: expected an intercept per row and classes in [0, {self.n_classes})")

    @property
    def n_features(self) -> int:
        return len(self.mean)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """[N, n_classes] class probabilities of ``features`` [N, F]."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(f"features: expected [N, {self.n_features}]; got {features.shape}")
        scores = ((features - self.mean) / self.scale) @ self.coef.T + self.intercept
        if len(self.coef) == 1:  # binary: the score is the second class's log-odds
            scores = np.concatenate([np.zeros_like(scores), scores], axis=1)
        scores -= scores.max(axis=1, keepdims=True)
        seen = np.exp(scores)
        probs = np.zeros((len(features), self.n_classes))
        probs[:, self.classes] = seen / seen.sum(axis=1, keepdims=True)
        return probs

    def class_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """``(weight [n_classes, F], bias [n_classes])`` on unstandardized features whose softmax
        is :meth:`probabilities` (the standardization folded in): a linear layer that answers what
        the readout does. A class the fit never saw scores far below every other."""
        weight = self.coef / self.scale
        bias = self.intercept - weight @ self.mean
        if len(self.coef) == 1:  # binary: the score is the second class's log-odds
            weight, bias = np.concatenate([np.zeros_like(weight), weight]), np.concatenate([[0.0], bias])
        full_weight = np.zeros((self.n_classes, self.n_features))
        full_bias = np.full(self.n_classes, bias.min() - _ABSENT_MARGIN)
        full_weight[self.classes], full_bias[self.classes] = weight, bias
        return full_weight, full_bias

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The state as named arrays (safetensors), keys prefixed by ``prefix``."""
        fields = ("mean", "scale", "coef", "intercept", "classes")
        return {f"{prefix}{name}": np.ascontiguousarray(getattr(self, name)) for name in fields}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_classes: int, prefix: str = "") -> LinearReadout:
        try:
            found = {n: np.asarray(arrays[f"{prefix}{n}"]) for n in ("mean", "scale", "coef", "intercept", "classes")}
        except KeyError as missing:
            raise ValueError(f"readout: the saved state has no array {missing}") from None
        return cls(**{**found, "classes": found["classes"].astype(np.int64)}, n_classes=n_classes)
