"""The configuration every task model besides the eegfm encoder shares (``model.spectrogram_cnn``,
``model.eeg_cnn_gru``): its head and labels, calibration, presets, checks that name the field, and
the answers code asks every model's config for (``modalities``, ``patch_size`` ...)."""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import PreTrainedConfig

from eegfm.contract.schema import SFREQ
from eegfm.core.config import ConfigError
from eegfm.model import config as eegfm_config
from eegfm.model.config import HEAD_REGISTRY


class TaskModelConfig(PreTrainedConfig):
    """``head`` / ``head_dropout`` / ``id2label``: the task head, as in ``EEGFMConfig`` (a
    classification head); ``temperature`` divides the logits in ``predict``. ``modalities``,
    ``patch_size``, ``spectrogram_pool`` and ``sfreq`` describe the inputs, for the code that asks
    every model for them. A subclass sets ``presets`` and checks its own fields in ``validate_fields``."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # name -> field overrides

    preset: str = "custom"
    head: str = "hms6"
    head_dropout: float = 0.2
    temperature: float = 1.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    modalities: list[str] | None = None
    patch_size: int = 1
    spectrogram_pool: int = 1  # frames read in whole multiples of (the ONNX runner trims to them)
    sfreq: float = SFREQ

    def __post_init__(self, **kwargs: Any) -> None:
        labels = getattr(HEAD_REGISTRY.get(self.head) if isinstance(self.head, str) else None, "default_labels", None)
        if self.id2label is None and "num_labels" not in kwargs and labels is not None:
            self.id2label = dict(enumerate(labels))
        super().__post_init__(**kwargs)
        if self.id2label is not None:
            self.label2id = {name: index for index, name in self.id2label.items()}
        self.validate_fields()
        self.validate_head()

    def validate_fields(self) -> None:
        """The subclass's own fields; raise through :meth:`fail`."""

    def validate_head(self) -> None:
        if self.head not in HEAD_REGISTRY or self.head == "regression":
            classifiers = sorted(name for name in HEAD_REGISTRY if name != "regression")
            self.fail("head", f"a registered classification head ({', '.join(classifiers)})", self.head)
        eegfm_config.n_outputs_for(self)  # a label set the head cannot take fails here
        self.check_number("head_dropout", self.head_dropout, 0.0, 1.0)
        self.check_number("temperature", self.temperature, 1e-3, 1e3)
        self.check_number("layer_norm_eps", self.layer_norm_eps, 0.0, 1.0)

    def fail(self, name: str, expected: str, got: Any) -> None:
        raise ConfigError(f"{type(self).__name__}.{name}: expected {expected}; got {got!r}")

    def check_int(self, name: str, value: Any, low: int, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(name, f"an integer in [{low}, {high}]", value)

    def check_number(self, name: str, value: Any, low: float, high: float) -> None:
        """A number in [low, high)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
            self.fail(name, f"a number in [{low}, {high})", value)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TaskModelConfig:
        if name not in cls.presets:
            allowed = ", ".join(map(repr, cls.presets))
            what = cls.model_type.removeprefix("eegfm_")
            raise ConfigError(f"{what} preset: expected one of {allowed}; got {name!r}")
        return cls(preset=name, **{**cls.presets[name], **overrides})
