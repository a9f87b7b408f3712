"""``EEGFMConfig``: the one configuration of the eegfm encoder, its heads and its pretraining losses.

A Hugging Face ``PreTrainedConfig`` (saved as ``config.json``); every field is validated in
``__post_init__`` and errors name the field, the allowed values and what was received. Named presets
are registered with :func:`register_preset`: ``EEGFMConfig.from_preset("base", head="binary")``.

=====  ======  =======  ============  ==========  ============================================
name   width   blocks   patch layers  parameters  use
=====  ======  =======  ============  ==========  ============================================
tiny   64      2        1             0.30 M      tests, CPU demo
base   192     4        4             5.01 M      like CBraMod (5.15 M) / LaBraM-base (5.82 M)
large  512     8        4             48.9 M      scaling runs
=====  ======  =======  ============  ==========  ============================================

(Counts for ``EEGFMModel`` with the ``hms6`` head; pretraining heads add 0.05 / 0.36 / 2.2 M.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import PreTrainedConfig

from eegfm.contract.channels import N_CANONICAL
from eegfm.contract.schema import SFREQ
from eegfm.core.config import ConfigError, check_int, check_option, check_range

MODALITIES: tuple[str, ...] = ("spectrogram", "ecg", "clinical")
GNN_IMPLS: tuple[str, ...] = ("pyg", "dense", "gather")
ADAPTER_KINDS: tuple[str, ...] = ("lora", "bottleneck")
# Where the head's covariances are mapped to a tangent space: at the identity (log-Euclidean) or at
# a reference point (affine-invariant); pyRiemann's names, as the benchmark's readout uses them.
HEAD_COVARIANCE_METRICS: tuple[str, ...] = ("logeuclid", "riemann")
KAGGLE_SPECTROGRAM_BINS = 400  # 4 chains (LL, RL, LP, RP) x 100 frequencies
# Head name -> TaskHead subclass, filled by ``model.heads.register_head``. It lives here so that the
# config checks head names and label sets without importing the heads, which import this module.
HEAD_REGISTRY: dict[str, Any] = {}


def _fail(name: str, expected: str, got: Any) -> None:
    raise ConfigError(f"EEGFMConfig.{name}: expected {expected}; got {got!r}")


# eegfm.core.config's checks under this class's field names (the one family of validators).
def _check_int(name: str, value: Any, low: int, high: int) -> None:
    check_int(f"EEGFMConfig.{name}", value, low, high)


def _check_float(name: str, value: Any, low: float, high: float, *, high_open: bool = False) -> None:
    check_range(f"EEGFMConfig.{name}", value, low, high, high_inclusive=not high_open, what="a number")


def _check_option(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    check_option(f"EEGFMConfig.{name}", value, allowed)


class EEGFMConfig(PreTrainedConfig):
    """Configuration of :class:`model.modeling.EEGFMModel` and ``EEGFMForPretraining``.

    Signal: ``sfreq`` (Hz), ``patch_size`` (samples per token, 256 = 1 s; inputs are cut to whole
    patches), ``input_scale_uv`` (µV divided by it inside the model), ``spectral_patch_features``
    (also embed each patch's log-magnitude spectrum).
    Encoder: ``num_hidden_layers`` spatio-temporal blocks over (channel, patch) tokens (temporal
    attention, one electrode-graph GNN layer, an MLP), then ``num_patch_layers`` transformer layers
    over patch tokens. ``channel_pool_heads``: softmax weightings of the channels pooled per patch
    (concatenated). ``spatial_filters`` > 0 adds ``model.readout.SpatialReadout`` (that many
    electrode-position filters of the channel tokens) to the embedding; ``spectral_readout`` also
    feeds it each channel's log band powers (``model.band_powers``), through a projection that
    starts at zero and is new at fine-tuning (pretraining's summary objective would read its own
    answer from it). ``covariance_channels`` > 0 adds ``model.covariance_branch.CovarianceBranch``
    to the embedding: each band's spatial covariance of that many virtual channels (electrode-position
    filters) in the log-Euclidean tangent space, through a projection that starts at zero; like the
    spectral readout it is new at fine-tuning. ``graph_neighbours``: k of
    the electrode k-NN graph. ``gnn_impl``: ``"pyg"``
    (torch_geometric message passing), ``"dense"`` (the same sums as a batched matmul) or
    ``"gather"`` (a neighbour gather that ``torch.compile`` fuses); switchable on a built model.
    ``causal``: patch t attends to patches <= t.
    Fusion: ``modalities`` the model can fuse (a subset of ``MODALITIES``, each may be absent in any
    batch); ``spectrogram_bins`` rows (400 in the Kaggle layout), ``spectrogram_pool`` frames per token.
    Heads: ``head`` (``model.heads.list_heads()``); ``id2label`` defaults to the head's labels;
    ``head_band_powers``: the head also reads each of the 19 canonical channels' Welch band powers
    (``model.band_powers.welch_band_features``, what the benchmark's band-power readout reads)
    through its own linear layer, zero at first, and with ``head_covariances`` each band's Welch
    co-spectral matrix in the log-Euclidean tangent space (``welch_tangent_features``, what the
    covariance readout reads) through the same layer (the encoder's output then carries them, and
    an ONNX export fixes the channel count at 19); ``head_covariance_metric`` ``"riemann"`` maps
    each band's matrix at a reference point instead (its congruence by the reference's inverse
    square root, the encoder's ``head_covariance_whitening`` buffer, before the logarithm: the
    affine-invariant tangent space; a probe head sets both, ``training.finetune.probe_head``);
    ``adapter_kind`` / ``adapter_rank`` are recorded so ``from_pretrained`` rebuilds the adapters;
    ``temperature`` divides the logits in ``predict`` (fitted on validation; 1.0 = uncalibrated).
    Uncertainty (``model.uncertainty``): ``mc_passes`` fixed dropout masks on the head's pre-logits
    (0: none), dropping ``mc_dropout`` of the features (None: ``head_dropout``), drawn from ``mc_seed``.
    Pretraining: masked spans of ``mask_min_ms``..``mask_max_ms`` covering ``mask_ratio``; InfoNCE
    with ``contrastive_dim`` / ``contrastive_temperature``; loss weights. Reconstruction is a
    normalised MSE (1.0 = predicting zero) and InfoNCE starts at ~6-7: at contrastive_weight 0.5 the
    contrastive gradients held reconstruction back, at 0.1 both fall together. ``summary_weight``
    > 0 adds the pooled embedding's band-power objective (``model.pretraining.BandPowerSummaryHead``),
    which trains the encoder's top too.
    """

    model_type = "eegfm"

    preset: str = "custom"
    sfreq: float = SFREQ
    patch_size: int = 256
    input_scale_uv: float = 100.0
    spectral_patch_features: bool = True
    hidden_size: int = 256
    num_attention_heads: int = 8
    num_hidden_layers: int = 4
    num_patch_layers: int = 2
    channel_pool_heads: int = 1
    spatial_filters: int = 0
    spectral_readout: bool = False
    head_band_powers: bool = False
    head_covariances: bool = False
    head_covariance_metric: str = "logeuclid"
    covariance_channels: int = 0
    mlp_ratio: float = 4.0
    graph_neighbours: int = 6
    gnn_impl: str = "pyg"
    causal: bool = False
    gradient_checkpointing: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.0
    modalities: list[str] | None = None
    spectrogram_bins: int = KAGGLE_SPECTROGRAM_BINS
    spectrogram_pool: int = 4
    head: str = "hms6"
    head_dropout: float = 0.1
    mc_passes: int = 20
    mc_dropout: float | None = None
    mc_seed: int = 0
    adapter_kind: str | None = None
    adapter_rank: int = 8
    temperature: float = 1.0
    mask_min_ms: float = 15.0
    mask_max_ms: float = 500.0
    mask_ratio: float = 0.3
    contrastive_dim: int = 128
    contrastive_temperature: float = 0.1
    reconstruction_weight: float = 1.0
    contrastive_weight: float = 0.1
    auxiliary_weight: float = 0.2
    auxiliary_head: str | None = None
    summary_weight: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5

    def __post_init__(self, **kwargs: Any) -> None:
        if self.modalities is None:
            self.modalities = list(MODALITIES)
        # A head's default label names, unless the caller (or config.json) gives its own.
        head_class = HEAD_REGISTRY.get(self.head) if isinstance(self.head, str) else None
        labels = getattr(head_class, "default_labels", None)
        if self.id2label is None and "num_labels" not in kwargs and labels is not None:
            self.id2label = dict(enumerate(labels))
        super().__post_init__(**kwargs)
        if self.id2label is not None:
            self.label2id = {name: index for index, name in self.id2label.items()}
        self.validate_eegfm()

    def validate_eegfm(self) -> None:
        """Raise :class:`ConfigError` for any value that is not allowed."""
        _check_float("sfreq", self.sfreq, 1.0, 100_000.0)
        _check_int("patch_size", self.patch_size, 8, 100_000)
        _check_float("input_scale_uv", self.input_scale_uv, 1e-6, 1e9)
        _check_int("hidden_size", self.hidden_size, 8, 16384)
        _check_int("num_attention_heads", self.num_attention_heads, 1, 1024)
        if self.hidden_size % self.num_attention_heads:
            _fail("num_attention_heads", f"a divisor of hidden_size={self.hidden_size}", self.num_attention_heads)
        if (self.hidden_size // self.num_attention_heads) % 2:
            _fail(
                "num_attention_heads",
                "a head width (hidden_size / heads) that is even, for rotary position encoding",
                self.num_attention_heads,
            )
        _check_int("num_hidden_layers", self.num_hidden_layers, 1, 256)
        _check_int("num_patch_layers", self.num_patch_layers, 0, 256)
        _check_float("mlp_ratio", self.mlp_ratio, 0.25, 64.0)
        _check_int("channel_pool_heads", self.channel_pool_heads, 1, 64)
        _check_int("spatial_filters", self.spatial_filters, 0, 1024)
        n_virtual = self.covariance_channels
        if isinstance(n_virtual, bool) or not isinstance(n_virtual, int) or n_virtual not in (0, *range(2, 65)):
            _fail(
                "covariance_channels", "0 (no covariance branch) or an integer in [2, 64] (virtual channels)", n_virtual
            )
        _check_int("graph_neighbours", self.graph_neighbours, 1, 64)
        _check_option("gnn_impl", self.gnn_impl, GNN_IMPLS)
        flags = ("causal", "gradient_checkpointing", "spectral_patch_features", "spectral_readout")
        flags += ("head_band_powers", "head_covariances")
        for name in flags:
            if not isinstance(getattr(self, name), bool):
                _fail(name, "True or False", getattr(self, name))
        _check_option("head_covariance_metric", self.head_covariance_metric, HEAD_COVARIANCE_METRICS)
        if self.head_covariance_metric != "logeuclid" and not self.head_covariances:
            _fail("head_covariance_metric", "'logeuclid' unless head_covariances (the head reads no covariances)",
                  self.head_covariance_metric)  # fmt: skip
        if self.spectral_readout and not self.spatial_filters:
            _fail("spectral_readout", "False unless spatial_filters > 0 (it feeds the spatial readout)", True)
        for name in ("dropout", "attention_dropout", "head_dropout"):
            _check_float(name, getattr(self, name), 0.0, 1.0, high_open=True)
        if not isinstance(self.modalities, (list, tuple)):
            _fail("modalities", f"a list drawn from {MODALITIES}", self.modalities)
        for modality in self.modalities:
            _check_option("modalities", modality, MODALITIES)
        self.modalities = [m for m in MODALITIES if m in self.modalities]  # canonical order
        _check_int("spectrogram_bins", self.spectrogram_bins, 1, 100_000)
        _check_int("spectrogram_pool", self.spectrogram_pool, 1, 10_000)
        _check_head("head", self.head)
        _check_int("mc_passes", self.mc_passes, 0, 1000)
        if self.mc_dropout is not None:
            _check_float("mc_dropout", self.mc_dropout, 0.0, 1.0, high_open=True)
        _check_int("mc_seed", self.mc_seed, 0, 2**31 - 1)
        if self.auxiliary_head is not None:
            _check_head("auxiliary_head", self.auxiliary_head)
        if self.adapter_kind is not None:
            _check_option("adapter_kind", self.adapter_kind, ADAPTER_KINDS)
        _check_int("adapter_rank", self.adapter_rank, 1, 4096)
        _check_float("temperature", self.temperature, 1e-3, 1e3)
        patch_ms = 1000.0 * self.patch_size / self.sfreq
        _check_float("mask_min_ms", self.mask_min_ms, 1000.0 / self.sfreq, patch_ms)
        _check_float("mask_max_ms", self.mask_max_ms, self.mask_min_ms, 60_000.0)
        _check_float("mask_ratio", self.mask_ratio, 0.0, 0.95)
        _check_int("contrastive_dim", self.contrastive_dim, 2, 16384)
        _check_float("contrastive_temperature", self.contrastive_temperature, 1e-3, 10.0)
        for name in ("reconstruction_weight", "contrastive_weight", "auxiliary_weight", "summary_weight"):
            _check_float(name, getattr(self, name), 0.0, 1e6)
        _check_float("initializer_range", self.initializer_range, 0.0, 1.0)
        _check_float("layer_norm_eps", self.layer_norm_eps, 0.0, 1.0)
        n_outputs_for(self)  # a head with an impossible label set fails here, not at build time
        if self.auxiliary_head is not None:
            n_outputs_for(self, self.auxiliary_head)

    @property
    def fixed_channels(self) -> int | None:
        """The channel count an ONNX export fixes (``model.export``): the 19 canonical channels
        when the head reads each one's band powers or covariances, else None (any count)."""
        return N_CANONICAL if self.head_band_powers or self.head_covariances else None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def patch_seconds(self) -> float:
        return self.patch_size / self.sfreq

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> EEGFMConfig:
        """A validated config from a named preset, with any fields overridden."""
        values = get_preset(name)
        values.update(overrides)
        return cls(preset=name, **values)


def _check_head(field: str, name: Any) -> None:
    if name not in HEAD_REGISTRY:
        _fail(field, f"a registered head ({', '.join(sorted(HEAD_REGISTRY))})", name)


def n_outputs_for(config: EEGFMConfig, head: str | None = None) -> int:
    """Width of the head's output layer (validates the head's label set)."""
    name = config.head if head is None else head
    return HEAD_REGISTRY[name].n_outputs(config, name == config.head)


_PRESETS: dict[str, Callable[[], dict[str, Any]]] = {}


def register_preset(name: str) -> Callable[[Callable[[], dict[str, Any]]], Callable[[], dict[str, Any]]]:
    """Register a function returning the field values of a named preset."""

    def decorator(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        if name in _PRESETS:
            raise ConfigError(f"register_preset: preset {name!r} is already registered")
        _PRESETS[name] = fn
        return fn

    return decorator


def list_presets() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str) -> dict[str, Any]:
    if name not in _PRESETS:
        raise ConfigError(f"preset: expected one of {', '.join(map(repr, list_presets()))}; got {name!r}")
    return dict(_PRESETS[name]())


@register_preset("tiny")
def tiny() -> dict[str, Any]:
    """Fast enough for unit tests and a CPU demo."""
    return dict(
        hidden_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        num_patch_layers=1,
        mlp_ratio=2.0,
        graph_neighbours=4,
        contrastive_dim=32,
        dropout=0.0,
    )


@register_preset("base")
def base() -> dict[str, Any]:
    """Width 192 keeps the (channel x patch) blocks, where the compute is, at about 0.8 GFLOP per
    10 s of 19-channel EEG; four patch layers (1/19 of the tokens) add capacity almost for free."""
    return dict(
        hidden_size=192,
        num_attention_heads=6,
        num_hidden_layers=4,
        num_patch_layers=4,
        mlp_ratio=4.0,
        graph_neighbours=6,
        contrastive_dim=128,
        dropout=0.1,
    )


@register_preset("large")
def large() -> dict[str, Any]:
    return dict(
        hidden_size=512,
        num_attention_heads=8,
        num_hidden_layers=8,
        num_patch_layers=4,
        mlp_ratio=4.0,
        graph_neighbours=8,
        contrastive_dim=256,
        dropout=0.1,
    )
