"""EEGFMConfig: validation messages, presets, label names."""

from __future__ import annotations

import pytest

from eegfm.core.tasks import HMS_CLASSES
from eegfm.model import (
    ConfigError,
    EEGFMConfig,
    count_parameters,
    create_model,
    get_preset,
    list_presets,
    register_preset,
)


def test_presets_are_registered_and_sized():
    assert list_presets() == ["base", "large", "tiny"]
    sizes = {name: count_parameters(create_model(name)) for name in ("tiny", "base")}
    assert sizes["tiny"] < 500_000
    # comparable to CBraMod (5.2 M) and LaBraM-base (5.8 M)
    assert 5_000_000 <= sizes["base"] <= 10_000_000
    large = EEGFMConfig.from_preset("large")
    assert large.hidden_size == 512 and large.num_hidden_layers == 8


def test_from_preset_applies_overrides_and_records_the_name():
    config = EEGFMConfig.from_preset("base", head="binary", dropout=0.0)
    assert config.preset == "base" and config.head == "binary" and config.dropout == 0.0
    assert config.hidden_size == get_preset("base")["hidden_size"]
    with pytest.raises(ConfigError, match=r"preset: expected one of 'base', 'large', 'tiny'; got 'huge'"):
        EEGFMConfig.from_preset("huge")


def test_register_preset_rejects_duplicates():
    with pytest.raises(ConfigError, match="already registered"):
        register_preset("tiny")(lambda: {})


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("hidden_size", 4, r"EEGFMConfig.hidden_size: expected an integer in \[8, 16384\]; got 4"),
        ("num_attention_heads", 5, r"num_attention_heads: expected a divisor of hidden_size=64; got 5"),
        ("gnn_impl", "gat", r"gnn_impl: expected one of 'pyg', 'dense', 'gather'; got 'gat'"),
        ("modalities", ["eeg2"], r"modalities: expected one of 'spectrogram', 'ecg', 'clinical'; got 'eeg2'"),
        (
            "head",
            "hms7",
            r"head: expected a registered head \(binary, hms6, multiclass, regression, sleep_stage\); got 'hms7'",
        ),
        ("dropout", 1.0, r"dropout: expected a number in \[0.0, 1.0\); got 1.0"),
        ("causal", "yes", r"causal: expected True or False; got 'yes'"),
        ("mask_min_ms", 2000.0, r"mask_min_ms: expected a number in \[3.90625, 1000.0\]; got 2000.0"),
        ("adapter_kind", "prefix", r"adapter_kind: expected one of 'lora', 'bottleneck'; got 'prefix'"),
        ("num_hidden_layers", 2.0, r"num_hidden_layers: expected an integer; got 2.0"),
        ("head_covariance_metric", "euclid", r"head_covariance_metric: expected one of 'logeuclid', 'riemann'"),
        ("head_covariance_metric", "riemann", r"head_covariance_metric: expected 'logeuclid' unless head_covariances"),
    ],
)
def test_errors_name_the_field_the_allowed_values_and_the_value(field, value, message):
    values = get_preset("tiny")
    values[field] = value
    with pytest.raises(ConfigError, match=message):
        EEGFMConfig(**values)


def test_head_labels():
    config = EEGFMConfig.from_preset("tiny")
    assert config.head == "hms6"
    assert [config.id2label[i] for i in range(6)] == list(HMS_CLASSES)
    assert config.label2id["LRDA"] == 3
    binary = EEGFMConfig.from_preset("tiny", head="binary")
    assert binary.id2label == {0: "negative", 1: "positive"}
    custom = EEGFMConfig.from_preset("tiny", head="multiclass", id2label={0: "rest", 1: "task"})
    assert custom.label2id == {"rest": 0, "task": 1}
    with pytest.raises(ConfigError, match=r"id2label: head 'hms6' expects 6 labels"):
        EEGFMConfig.from_preset("tiny", id2label={0: "a", 1: "b"})
    with pytest.raises(ConfigError, match=r"auxiliary_head: head 'multiclass' takes its classes from id2label"):
        EEGFMConfig.from_preset("tiny", auxiliary_head="multiclass")


def test_modalities_are_kept_in_canonical_order():
    config = EEGFMConfig.from_preset("tiny", modalities=["clinical", "spectrogram"])
    assert config.modalities == ["spectrogram", "clinical"]
