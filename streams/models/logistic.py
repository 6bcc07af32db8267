"""The population relapse-risk learner: online logistic regression on standardised inputs.

:class:`OnlineLogistic` is what the trainer updates, one labelled day at a
time, and freezes into numbered :class:`~streams.models.snapshot.ModelSnapshot`
versions for the workers. It keeps a running mean and variance of every
input (Welford 1962) and learns the weights of the standardised inputs with
AdaGrad steps (Duchi 2011) and an L2 penalty, as river's
``StandardScaler | LogisticRegression`` pipeline would, in ~30 floats per
input and no randomness: the same labelled days in the same order give the
same model, bit for bit.

>>> model = OnlineLogistic(("x",))
>>> for n in range(2000):
...     model.learn_one({"x": float(n % 4)}, n % 4 == 3)
>>> high, low = model.predict_proba_one({"x": 3.0}), model.predict_proba_one({"x": 0.0})
>>> high > 3 * low  # x = 3 is always positive, x = 0 never
True
>>> snapshot = model.snapshot(name="demo", version=1)
>>> abs(snapshot.predict_proba_one({"x": 3.0}) - model.predict_proba_one({"x": 3.0})) < 1e-6
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from streams.models.snapshot import ModelSnapshot, sigmoid

#: Smallest standard deviation used to standardise an input (a constant input
#: would otherwise divide by zero).
MIN_SCALE = 0.01
_EPSILON = 1e-8
#: Digits kept in a published snapshot.
_DIGITS = 8


@dataclass(slots=True)
class OnlineLogistic:
    """Logistic regression learnt one example at a time; ``learn_one`` / ``predict_proba_one``.

    Parameters
    ----------
    features
        The input names, in model order.
    learning_rate
        AdaGrad's base step.
    l2
        Weight of the L2 penalty on the weights (not the bias).
    positive_weight
        How much more a positive day counts than a negative one (positive days
        are rare: about 1 in 20 in a relapse-prone cohort).
    prior
        The probability the intercept starts from (its log-odds), so that the
        first steps need not walk the intercept down from 0.5.

    Predictions and snapshots use the running average of the weights over all
    steps (Polyak & Juditsky 1992), which settles the noise of single steps.

    >>> model = OnlineLogistic(("a", "b"), positive_weight=2.0)
    >>> model.learn_one({"a": 1.0, "b": 0.0}, True)
    >>> model.seen, model.positives, [round(w, 3) for w in model.weights]
    (1, 1, [0.0, 0.0])
    """

    features: tuple[str, ...]
    learning_rate: float = 0.02
    l2: float = 1e-3
    positive_weight: float = 1.0
    prior: float = 0.05
    weights: list[float] = field(default_factory=list)
    bias: float = math.nan
    average: list[float] = field(default_factory=list)
    average_bias: float = math.nan
    squares: list[float] = field(default_factory=list)
    bias_square: float = 0.0
    means: list[float] = field(default_factory=list)
    m2: list[float] = field(default_factory=list)
    seen: int = 0
    positives: int = 0

    def __post_init__(self) -> None:
        n = len(self.features)
        for name in ("weights", "squares", "means", "m2", "average"):
            if not getattr(self, name):
                setattr(self, name, [0.0] * n)
        if not 0 < self.prior < 1:
            raise ValueError(f"prior is {self.prior!r}; accepted: a probability in (0, 1)")
        if math.isnan(self.bias):
            self.bias = math.log(self.prior / (1 - self.prior))
        if math.isnan(self.average_bias):
            self.average_bias = self.bias
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate is {self.learning_rate!r}; accepted: > 0")
        if self.l2 < 0 or self.positive_weight <= 0:
            raise ValueError(
                f"l2 {self.l2!r} and positive_weight {self.positive_weight!r}; "
                "accepted: l2 >= 0 and positive_weight > 0"
            )

    def _scales(self) -> list[float]:
        if self.seen < 2:
            return [1.0] * len(self.features)
        return [max(math.sqrt(m2 / self.seen), MIN_SCALE) for m2 in self.m2]

    def _vector(self, x: Mapping[str, float]) -> list[float]:
        pairs = zip(self.features, self.means, strict=True)
        return [float(x.get(name, mean)) for name, mean in pairs]

    def _standardised(self, values: Sequence[float]) -> list[float]:
        return [(v - m) / s for v, m, s in zip(values, self.means, self._scales(), strict=True)]

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        """The probability of a positive label for ``x`` (missing inputs count as their mean)."""
        z = self.average_bias + sum(
            w * v for w, v in zip(self.average, self._standardised(self._vector(x)), strict=True)
        )
        return sigmoid(z)

    def learn_one(self, x: Mapping[str, float], y: bool) -> None:
        """Update the running standardisation with ``x``, then take one step towards ``y``."""
        values = self._vector(x)
        self.seen += 1
        self.positives += bool(y)
        for i, v in enumerate(values):  # Welford's running mean and sum of squares
            delta = v - self.means[i]
            self.means[i] += delta / self.seen
            self.m2[i] += delta * (v - self.means[i])
        scaled = self._standardised(values)
        p = sigmoid(self.bias + sum(w * v for w, v in zip(self.weights, scaled, strict=True)))
        error = (p - float(y)) * (self.positive_weight if y else 1.0)
        self.bias_square += error * error
        self.bias -= self.learning_rate * error / math.sqrt(self.bias_square + _EPSILON)
        for i, v in enumerate(scaled):
            gradient = error * v + self.l2 * self.weights[i]
            self.squares[i] += gradient * gradient
            self.weights[i] -= self.learning_rate * gradient / math.sqrt(self.squares[i] + _EPSILON)
            self.average[i] += (self.weights[i] - self.average[i]) / self.seen
        self.average_bias += (self.bias - self.average_bias) / self.seen

    def snapshot(
        self,
        *,
        name: str = "relapse_risk",
        version: int,
        horizon_days: int = 28,
        trained_until: datetime | None = None,
    ) -> ModelSnapshot:
        """The current weights and standardisation as an immutable, numbered version."""
        return ModelSnapshot(
            name=name,
            version=version,
            horizon_days=horizon_days,
            features=self.features,
            weights=tuple(round(w, _DIGITS) for w in self.average),
            bias=round(self.average_bias, _DIGITS),
            means=tuple(round(m, _DIGITS) for m in self.means),
            scales=tuple(round(s, _DIGITS) for s in self._scales()),
            examples=self.seen,
            positives=self.positives,
            trained_until=trained_until,
        )

    def clone(self) -> OnlineLogistic:
        """An independent copy."""
        return OnlineLogistic(
            self.features,
            self.learning_rate,
            self.l2,
            self.positive_weight,
            self.prior,
            list(self.weights),
            self.bias,
            list(self.average),
            self.average_bias,
            list(self.squares),
            self.bias_square,
            list(self.means),
            list(self.m2),
            self.seen,
            self.positives,
        )
