"""A window's clinical recommendation from a rule table: probabilities, uncertainty and artifact
score in, a recommendation (``urgent review``, ``expert review``, ``routine`` ...) out.

The table (YAML; the default is ``inference/recommendation.yaml``, shipped with the package)::

    labels: [Seizure, LPD, GPD, LRDA, GRDA, Other]   # optional: the classes its rules are written for
    default: standard review                          # when no rule matches
    flagged: [urgent review, expert review]          # these make a recording's flagged episodes
    rules:                                            # in order; the first that matches wins
      - name: seizure or lateralized periodic discharges
        recommendation: urgent review
        classes: [Seizure, LPD]
        min_probability: 0.5

A rule matches when all its conditions hold (at least one is required):

=========================  =================================================================
``classes`` +              the probability of any of ``classes`` is at least this
``min_probability``
``predicted``              the most likely class is one of these
``min_confidence``         the highest probability is at least this
``min_entropy``            the predictive entropy (nats) is at least this
``min_normalized_entropy`` the predictive entropy / log(number of classes) is at least this
``min_mutual_information`` the mutual information (nats) of the samples is at least this; never
                           holds without samples (``mc_passes`` 0)
``min_artifact_score``     the window's artifact score is at least this
=========================  =================================================================

Rules name classes by label. With ``labels`` in the table, its rules may name only those; a model
with other labels (a binary or other multi-class model) keeps only the rules that name no class
(uncertainty, artifact). Without ``labels`` the rules must name the model's own labels. Either way
a rule naming a class that is not allowed is an error naming the rule, the field and the labels.
"""

from __future__ import annotations

import dataclasses
import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from eegfm.core.config import Config, ConfigError, check_float
from eegfm.core.logs import get_logger

log = get_logger(__name__)
DEFAULT_RULES = "recommendation.yaml"  # in this package
_THRESHOLDS = (
    "min_probability",
    "min_confidence",
    "min_entropy",
    "min_normalized_entropy",
    "min_mutual_information",
    "min_artifact_score",
)
_UNIT_THRESHOLDS = ("min_probability", "min_confidence", "min_normalized_entropy", "min_artifact_score")


@dataclasses.dataclass(frozen=True)
class WindowEvidence:
    """What the rules read about one window; a condition on a quantity that is None never holds."""

    probabilities: dict[str, float]  # label -> probability; empty for a regression head
    entropy: float | None  # predictive entropy, nats
    mutual_information: float | None  # None without samples
    artifact_score: float

    @property
    def predicted(self) -> str | None:
        return max(self.probabilities, key=self.probabilities.__getitem__) if self.probabilities else None

    @property
    def confidence(self) -> float | None:
        return max(self.probabilities.values()) if self.probabilities else None

    @property
    def normalized_entropy(self) -> float | None:
        n = len(self.probabilities)
        if self.entropy is None or n < 2:
            return None
        return self.entropy / math.log(n)


def _at_least(value: float | None, threshold: float | None) -> bool:
    """True where no threshold is set; else whether ``value`` is known and reaches it."""
    return threshold is None or (value is not None and value >= threshold)


@dataclasses.dataclass
class Rule(Config):
    name: str
    recommendation: str
    classes: tuple[str, ...] = ()
    min_probability: float | None = None
    predicted: tuple[str, ...] = ()
    min_confidence: float | None = None
    min_entropy: float | None = None
    min_normalized_entropy: float | None = None
    min_mutual_information: float | None = None
    min_artifact_score: float | None = None

    def validate(self) -> None:
        where = f"rule {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"rule name: expected a non-empty string; got {self.name!r}")
        if not isinstance(self.recommendation, str) or not self.recommendation.strip():
            raise ConfigError(f"{where}: recommendation: expected a non-empty string; got {self.recommendation!r}")
        for field in ("classes", "predicted"):
            value = getattr(self, field)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {field}: expected a list of class labels; got {value!r}")
        for field in _THRESHOLDS:
            if (value := getattr(self, field)) is not None:
                high = 1.0 if field in _UNIT_THRESHOLDS else None
                check_float(f"{where}: {field}", value, 0.0, high)
        if bool(self.classes) != (self.min_probability is not None):
            raise ConfigError(f"{where}: classes and min_probability: expected both or neither")
        if not self.predicted and all(getattr(self, f) is None for f in _THRESHOLDS):
            raise ConfigError(
                f"{where}: expected at least one condition (classes + min_probability, predicted, "
                f"{', '.join(_THRESHOLDS[1:])})"
            )

    @property
    def named_classes(self) -> tuple[tuple[str, str], ...]:
        """(field, label) of every class the rule names."""
        return tuple(("classes", c) for c in self.classes) + tuple(("predicted", c) for c in self.predicted)

    def matches(self, window: WindowEvidence) -> bool:
        class_probability = max((window.probabilities.get(c, 0.0) for c in self.classes), default=None)
        return (
            _at_least(class_probability, self.min_probability)
            and (not self.predicted or window.predicted in self.predicted)
            and _at_least(window.confidence, self.min_confidence)
            and _at_least(window.entropy, self.min_entropy)
            and _at_least(window.normalized_entropy, self.min_normalized_entropy)
            and _at_least(window.mutual_information, self.min_mutual_information)
            and _at_least(window.artifact_score, self.min_artifact_score)
        )


@dataclasses.dataclass
class RecommendationRules(Config):
    """The rule table of the module docstring."""

    rules: tuple[Rule, ...]
    default: str = "standard review"
    flagged: tuple[str, ...] = ("urgent review", "expert review")
    labels: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, data: Any) -> RecommendationRules:
        if not isinstance(data, dict):
            raise ConfigError(f"recommendation rules: expected a mapping; got {type(data).__name__}")
        rules = data.get("rules")
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise ConfigError(
                f"rules: expected a list of rules (mappings with name, recommendation ...); got {rules!r}"
            )
        parsed = []
        for number, rule in enumerate(rules, start=1):
            try:
                parsed.append(Rule.from_dict(rule))
            except ConfigError as err:  # the rule's own checks name it; from_dict's (unknown fields) do not
                named = str(err).startswith("rule ")
                raise ConfigError(str(err) if named else f"rule {rule.get('name', number)!r}: {err}") from None
        labels = data.get("labels")
        return super().from_dict({**data, "rules": parsed, "labels": None if labels is None else tuple(labels)})

    def validate(self) -> None:
        if not isinstance(self.default, str) or not self.default.strip():
            raise ConfigError(f"default: expected a non-empty recommendation; got {self.default!r}")
        names = [rule.name for rule in self.rules]
        if duplicated := sorted({n for n in names if names.count(n) > 1}):
            raise ConfigError(f"rules: expected distinct names; {', '.join(map(repr, duplicated))} repeat")
        given = {self.default, *(rule.recommendation for rule in self.rules)}
        if unknown := [f for f in self.flagged if f not in given]:
            raise ConfigError(
                f"flagged: expected recommendations the table gives ({', '.join(sorted(given))}); got {unknown}"
            )
        if self.labels is not None:
            self.check_classes(self.labels)

    def check_classes(self, labels: tuple[str, ...]) -> None:
        """ConfigError naming the first rule, field and class not among ``labels``."""
        for rule in self.rules:
            for field, label in rule.named_classes:
                if label not in labels:
                    raise ConfigError(
                        f"rule {rule.name!r}: {field}: unknown class {label!r}; expected one of {', '.join(labels)}"
                    )

    def for_labels(self, labels: tuple[str, ...]) -> RecommendationRules:
        """The table for a model with these class labels (see the module docstring)."""
        labels = tuple(labels)
        if self.labels is None:
            self.check_classes(labels)
            return self
        if set(self.labels) == set(labels):
            return self
        kept = tuple(rule for rule in self.rules if not rule.named_classes)
        dropped = [rule.name for rule in self.rules if rule.named_classes]
        if dropped:
            log.info(
                "recommendation rules for %s name classes of %s: leaving out %s",
                ", ".join(labels),
                ", ".join(self.labels),
                "; ".join(dropped),
            )
        given = {self.default, *(rule.recommendation for rule in kept)}
        flagged = tuple(f for f in self.flagged if f in given)
        return dataclasses.replace(self, rules=kept, labels=labels, flagged=flagged)

    def recommend(self, window: WindowEvidence) -> tuple[str, str]:
        """(recommendation, the name of the rule that gave it, or "default")."""
        for rule in self.rules:
            if rule.matches(window):
                return rule.recommendation, rule.name
        return self.default, "default"

    def is_flagged(self, recommendation: str) -> bool:
        return recommendation in self.flagged


def load_rules(path: str | Path | None = None) -> RecommendationRules:
    """The rule table in ``path`` (YAML), or the package's default; errors name the file."""
    if path is None:
        text, where = resources.files("eegfm.inference").joinpath(DEFAULT_RULES).read_text(), DEFAULT_RULES
    else:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ConfigError(f"{where}: cannot read the recommendation rules ({err.strerror})") from None
    try:
        return RecommendationRules.from_dict(yaml.safe_load(text))
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML ({err})") from None
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
