import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from eegfm.core.config import ConfigError
from eegfm.core.tasks import FINETUNE_TASKS, TASK_CLASSES
from eegfm.training.config import (
    FinetuneConfig,
    OptimConfig,
    PretrainConfig,
    load_config,
    parse_overrides,
    resolve_precision,
)
from eegfm.training.config_files import list_config_presets


@pytest.mark.parametrize("preset", ["cpu-tiny", "cpu-small", "base", "large-gpu"])
@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_presets_load_validate_and_round_trip(preset, kind):
    config = load_config(preset, kind)
    assert isinstance(config, PretrainConfig if kind == "pretrain" else FinetuneConfig)
    assert type(config).from_dict(config.to_dict()) == config
    model = config.model_config()
    assert model.preset == {"cpu-tiny": "tiny", "cpu-small": "tiny", "base": "base", "large-gpu": "large"}[preset]
    assert model.gradient_checkpointing == config.activation_checkpointing


def test_preset_contents_match_their_purpose():
    assert {"base", "cpu-tiny", "cpu-small", "large-gpu"} <= set(list_config_presets())
    # the benchmark recipe pretrains every layer fine-tuning reads, and reads where channels sit
    small = load_config("cpu-small", "pretrain").model_config()
    assert small.summary_weight > 0 and small.spatial_filters > 0
    tiny = load_config("cpu-tiny")
    assert (tiny.loader.batch_size, tiny.backend, tiny.precision, tiny.wandb.mode) == (8, "gloo", "fp32", "offline")
    assert tiny.optim.max_steps <= 1000
    base = load_config("base")
    assert (base.optim.lr, base.optim.warmup_steps, base.optim.max_steps, base.precision) == (
        5e-4,
        2000,
        100_000,
        "bf16",
    )
    # GPU presets take exact float16 batches; CPU runs convert in the loader workers
    assert (base.loader.eeg_dtype, tiny.loader.eeg_dtype, load_config("base", "finetune").loader.eeg_dtype) == (
        "float16",
        "float32",
        "float32",
    )
    # Every preset's pretraining and the GPU presets' fine-tuning size their loader workers to the
    # machine (on a CPU one or none: the same batches); CPU fine-tuning loads in-process
    presets = ("cpu-tiny", "cpu-small", "base", "large-gpu")
    assert {load_config(p, "pretrain").loader.num_workers for p in presets} == {"auto"}
    assert {load_config(p, "finetune").loader.num_workers for p in ("base", "large-gpu")} == {"auto"}
    assert {load_config(p, "finetune").loader.num_workers for p in ("cpu-tiny", "cpu-small")} == {0}
    assert load_config("cpu-tiny", "pretrain", ["loader.num_workers=0"]).loader.num_workers == 0
    large = load_config("large-gpu")
    assert (large.backend, large.precision, large.activation_checkpointing, large.compile) == (
        "nccl",
        "bf16",
        True,
        True,
    )
    # GPU presets pretrain compiled, with the GNN form that torch.compile fuses; CPU runs keep torch_geometric's
    assert (base.compile, base.model_config().gnn_impl, large.model_config().gnn_impl) == (True, "gather", "gather")
    assert (tiny.compile, tiny.model_config().gnn_impl) == (False, "pyg")
    # ... and full batches only, so a partial one never recompiles the step; fine-tuning keeps every window
    assert (base.loader.drop_last, large.loader.drop_last, tiny.loader.drop_last) == (True, True, False)
    assert not any(load_config(p, "finetune").loader.drop_last for p in ("base", "large-gpu", "cpu-tiny"))
    # TF32 for the float32 InfoNCE logits on the GPU presets only: CPU runs keep exact float32
    assert {load_config(p, k).tf32 for p in ("base", "large-gpu") for k in ("pretrain", "finetune")} == {True}
    assert (tiny.tf32, load_config("cpu-tiny", "finetune").tf32) == (False, False)
    adapter = load_config("large-gpu", "finetune").model_config()
    assert (adapter.adapter_kind, adapter.adapter_rank, adapter.head) == ("lora", 16, "hms6")


def test_overrides_from_the_command_line_and_from_dicts():
    config = load_config(
        "cpu-tiny",
        "pretrain",
        [
            "optim.lr=3e-4",
            "loader.batch_size=16",
            "optim.max_steps=1e3",
            "model_overrides.dropout=0.2",
            "loader.augment.noise_std=0.1",
            "wandb.mode=disabled",
            "eval_every=null",
            "optim.betas=[0.9, 0.99]",
        ],
    )
    assert config.optim.lr == 3e-4 and config.optim.max_steps == 1000 and isinstance(config.optim.max_steps, int)
    assert config.loader.batch_size == 16 and config.loader.augment == {"noise_std": 0.1}
    assert config.model_config().dropout == 0.2 and config.wandb.mode == "disabled"
    assert config.eval_every is None and config.optim.betas == (0.9, 0.99)
    nested = load_config("cpu-tiny", "finetune", {"optim": {"lr": 1e-5}, "task": "eegmat", "loss": "ce"})
    assert nested.optim.lr == 1e-5 and nested.head == "binary"
    assert nested.model_config().id2label == {0: "rest", 1: "task"}
    tuab = load_config("cpu-tiny", "finetune", {"task": "tuab", "loss": "ce"})
    assert tuab.head == "binary" and tuab.model_config().id2label == {0: "normal", 1: "abnormal"}
    tusz = load_config("cpu-tiny", "finetune", {"task": "tusz", "loss": "focal"})
    assert tusz.head == "binary" and tusz.model_config().id2label == {0: "background", 1: "seizure"}
    assert parse_overrides({"optim.lr": 1, "loader": {"seed": 2}}) == {"optim.lr": 1, "loader.seed": 2}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.lr=-1"], r"optim.lr: expected a value in \(0, 10\]; got -1"),
        (["precision=fp8"], r"precision: expected one of 'fp32', 'bf16', 'fp16'; got 'fp8'"),
        (["loader.batch_size=0"], r"loader.batch_size: expected an integer in \[1, 1048576\]; got 0"),
        (["loader.batch_size=2.5"], r"loader.batch_size: expected an integer; got 2.5"),
        (["loader.num_workers=many"], r"loader.num_workers: expected an integer in \[0, 1024\] or 'auto'; got 'many'"),
        (["loader.num_workers=-1"], r"loader.num_workers: expected an integer in \[0, 1024\] or 'auto'; got -1"),
        (["loader.eeg_dtype=bfloat16"], r"loader.eeg_dtype: expected one of 'float32', 'float16'; got 'bfloat16'"),
        (["backend=mpi"], r"backend: expected one of 'auto', 'gloo', 'nccl', 'horovod'; got 'mpi'"),
        (["model=huge"], r"model: expected one of 'base', 'large', 'tiny'; got 'huge'"),
        (["compile=1"], r"compile: expected true or false; got 1"),
        (["tf32=yes please"], r"tf32: expected true or false; got 'yes please'"),
        (["allow_partial=maybe"], r"allow_partial: expected true or false; got 'maybe'"),
        (["loader.drop_last=sometimes"], r"loader.drop_last: expected true or false; got 'sometimes'"),
        (["optim.max_steps=null"], r"optim.max_steps: expected an integer >= 1 for pretraining; got None"),
        (["optim.warmup_steps=500"], r"optim.warmup_steps: expected fewer than max_steps=300; got 500"),
        (
            ["model_overrides.num_attention_heads=5"],
            r"model_overrides: EEGFMConfig.num_attention_heads: "
            r"expected a divisor of hidden_size=64; got 5",
        ),
        (["model_overrides.hiden_size=32"], r"model_overrides: unknown field 'hiden_size'; allowed: .*hidden_size"),
        (
            ["model_overrides.gradient_checkpointing=true"],
            r"model_overrides.gradient_checkpointing: cannot be "
            r"overridden here; set 'activation_checkpointing'",
        ),
        (["wandb.mode=cloud"], r"wandb.mode: expected one of 'offline', 'online', 'disabled'; got 'cloud'"),
        (["val_fraction=1"], r"val_fraction: expected a value in \[0, 1\); got 1"),
        (["split_group=recording"], r"split_group: expected one of 'subject', 'site'; got 'recording'"),
        (["val_windows=0"], r"val_windows: expected an integer in \[1, inf\]; got 0"),
        (
            ["exclude_corpus_splits=[test]"],
            r"exclude_corpus_splits: expected one of 'train', 'dev', 'eval'; got 'test'",
        ),
        (
            ["exclude_corpus_splits=eval"],
            r"exclude_corpus_splits: expected a list of corpus splits \(train, dev, eval\); "
            r"got 'eval'",
        ),
        (["train_subject_fraction=0"], r"train_subject_fraction: expected a value in \(0, 1\]; got 0"),
    ],
)
def test_bad_pretrain_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cpu-tiny", "pretrain", overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["task=sleep"],
            r"task: expected one of 'hms6', 'eegmat', 'tuab', 'tuep', 'tusz', 'chbmit', 'siena', "
            r"'tuev', 'tuar', 'eegmmi', 'binary', 'multiclass', 'regression'; got 'sleep'",
        ),
        (
            ["task=multiclass"],
            r"model_overrides.id2label: task 'multiclass' takes its classes from it; expected the "
            r"class names by label",
        ),
        (["task=eegmat", "loss=kl"], r"loss: 'kl' needs vote distributions \(task 'hms6'\); got task 'eegmat'"),
        (["mode=frozen"], r"mode: expected one of 'linear', 'adapter', 'full'; got 'frozen'"),
        (["head_init=zeros"], r"head_init: expected one of 'prior', 'probe'; got 'zeros'"),
        (["probe_chosen_by=test"], r"probe_chosen_by: expected one of 'cv', 'validation'; got 'test'"),
        (
            ["epochs_chosen_by=test"],
            r"epochs_chosen_by: expected one of 'validation', 'training_people', 'none'; got 'test'",
        ),
        (["epoch_folds=1"], r"epoch_folds: expected"),
        (
            ["epochs_chosen_by=training_people", "eval_every=5"],
            r"epochs_chosen_by: 'training_people' compares the folds' losses epoch by epoch, in one stage; "
            r"expected eval_every None and two_stage_min_votes None; got 5 and None",
        ),
        (
            ["task=regression", "loss=null", "temperature_scaling=false", "head_init=probe"],
            r"head_init: 'probe' fits a classifier; task 'regression' takes 'prior'",
        ),
        (["model_overrides={head_band_powers: 1}"], r"head_band_powers: expected True or False"),
        (["model_overrides={head_covariances: yes please}"], r"head_covariances: expected True or False"),
        (["class_weights=[1, 2]"], r"class_weights: expected 6 weights \(one per class of task 'hms6'\); got 2"),
        (["class_weights=inverse"], r"class_weights: expected one of 'none', 'balanced'; got 'inverse'"),
        (["mode=linear", "unfreeze_schedule=[1, 2]"], r"unfreeze_schedule: gradual unfreezing needs mode 'full'"),
        (["unfreeze_schedule=[2, 1]"], r"unfreeze_schedule: expected strictly increasing numbers; got \[2, 1\]"),
        (["task=regression", "loss=null", "two_stage_min_votes=3"], r"two_stage_min_votes: only task 'hms6'"),
        (
            ["task=regression", "loss=null", "temperature_scaling=false", "label_smoothing=0.1"],
            r"label_smoothing: task 'regression' has no classes",
        ),
        (["val_fraction=1.0"], r"val_fraction: expected a value in \(0, 1\); got 1.0"),
        (["split_group=recording"], r"split_group: expected one of 'subject', 'site'; got 'recording'"),
        (["adapter_kind=prefix"], r"adapter_kind: expected one of 'lora', 'bottleneck'; got 'prefix'"),
        (["corpus_split=eval"], r"corpus_split: expected true or false; got 'eval'"),
        (
            ["corpus_split=true", "test_fraction=0.2"],
            r"corpus_split: the corpus's eval recordings are the test split, .*expected split_group 'subject' and "
            r"test_fraction 0; got 'subject' and 0.2",
        ),
        (["test_sites=site-a"], r"test_sites: expected a list of site pseudonyms .*; got 'site-a'"),
        (["test_sites=[site-a, 3]"], r"test_sites: expected a list of site pseudonyms .*; got \['site-a', 3\]"),
        (
            ["test_sites=[site-a]", "test_fraction=0.2"],
            r"test_sites: the named sites are the test split; expected test_fraction 0 and corpus_split false; got 0.2 "
            r"and False",
        ),
    ],
)
def test_bad_finetune_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cpu-tiny", "finetune", overrides)


def test_finetune_class_weights_and_multiclass_labels():
    config = load_config("cpu-tiny", "finetune", ["class_weights=[1, 2, 2, 1, 1, 0.5]"])
    assert config.class_weights == [1.0, 2.0, 2.0, 1.0, 1.0, 0.5]
    multi = load_config(
        "cpu-tiny",
        "finetune",
        [
            "task=multiclass",
            "loss=focal",
            "focal_gamma=1.5",
            "model_overrides.id2label=[a, b, c]",
            "class_weights=[1, 1, 2]",
        ],
    )
    assert multi.model_config().id2label == {0: "a", 1: "b", 2: "c"} and multi.head == "multiclass"


def test_pretraining_a_peer_takes_its_own_model_fields():
    cfg = load_config("cpu-small", "pretrain", ["architecture=cbramod", "model_overrides={mask_ratio: 0.4}"])
    model = cfg.model_config()
    assert type(model).__name__ == "CBraModConfig" and model.preset == "tiny" and model.mask_ratio == 0.4
    with pytest.raises(ConfigError, match=r"architecture: expected one of 'cbramod', 'eegfm', 'labram'; got 'eegnet'"):
        load_config("cpu-small", "pretrain", ["architecture=eegnet"])
    with pytest.raises(
        ConfigError, match=r"unknown field 'summary_weight'; allowed: .*mask_ratio.*clears the preset's"
    ):
        load_config("cpu-small", "pretrain", ["architecture=labram"])  # cpu-small's eegfm fields


def test_unknown_keys_are_rejected_with_the_valid_ones(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"override 'optim.lrr': unknown key 'lrr' in optim; "
        r"allowed: betas, eps, grad_accum_steps, grad_clip, layer_decay, lr,",
    ):
        load_config("cpu-tiny", "pretrain", ["optim.lrr=1"])
    with pytest.raises(
        ConfigError,
        match=r"override 'batchsize': unknown key 'batchsize' in PretrainConfig; "
        r"allowed: activation_checkpointing, allow_partial, architecture, backend, compile,",
    ):
        load_config("cpu-tiny", "pretrain", {"batchsize": 3})
    with pytest.raises(ConfigError, match=r"override 'optim.lr.x': optim.lr is a value, not a section"):
        load_config("cpu-tiny", "pretrain", ["optim.lr.x=1"])
    with pytest.raises(ConfigError, match=r"override: expected 'key.sub=value'; got 'optim.lr'"):
        load_config("cpu-tiny", "pretrain", ["optim.lr"])
    bad = tmp_path / "mine.yaml"
    bad.write_text("model: tiny\noptim: {max_steps: 10, lr: 1e-3, warmup: 2}\n")
    with pytest.raises(ConfigError, match=r"mine.yaml \[pretrain\]: OptimConfig: unknown field\(s\) warmup; allowed:"):
        load_config(bad)
    sections = tmp_path / "sections.yaml"
    sections.write_text("pretrain: {optim: {max_steps: 10}}\nevaluate: {}\n")
    with pytest.raises(ConfigError, match=r"sections.yaml: unknown section\(s\) evaluate; allowed: pretrain, finetune"):
        load_config(sections)
    with pytest.raises(
        ConfigError,
        match=r"config: expected a preset \('base', 'cpu-small', 'cpu-tiny', 'large-gpu'\) "
        r"or the path of a YAML file; got 'tiny-cpu'",
    ):
        load_config("tiny-cpu")


def test_a_single_section_file_and_yaml_floats(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model: tiny\noptim: {max_steps: 1e4, lr: 1e-3, warmup_steps: 1_000}\n")
    config = load_config(path)
    assert config.optim.lr == 1e-3 and config.optim.max_steps == 10_000 and config.optim.warmup_steps == 1000
    with pytest.raises(ConfigError, match=r"mine.yaml: has no 'finetune' section"):
        (tmp_path / "mine.yaml").write_text("pretrain: {}\n")
        load_config(path, "finetune")


def test_cosine_schedule_with_warmup():
    optim = OptimConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert optim.lr_factor(0) == pytest.approx(0.1) and optim.lr_factor(9) == pytest.approx(1.0)
    assert optim.lr_factor(10) == pytest.approx(1.0)
    assert optim.lr_factor(60) == pytest.approx(0.55)  # half-way: (1 + 0.1) / 2
    assert optim.lr_factor(110) == pytest.approx(0.1) and optim.lr_factor(500) == pytest.approx(0.1)
    assert OptimConfig(max_steps=None).lr_factor(5, total_steps=10) <= 1.0
    with pytest.raises(ConfigError, match=r"optim.max_steps: the cosine schedule needs a length"):
        OptimConfig(max_steps=None).lr_factor(5)
    assert all(math.isfinite(optim.lr_factor(s)) for s in range(0, 200, 7))


def test_runtime_check_for_precision():
    assert resolve_precision("bf16", "cpu") is torch.bfloat16
    assert resolve_precision("fp16", "cuda:0") is torch.float16
    with pytest.raises(ConfigError, match=r"precision: 'fp16' needs a CUDA device; got device 'cpu'"):
        resolve_precision("fp16", "cpu")


def test_each_data_sets_task_has_the_classes_the_pipeline_writes_for_it():
    """The head's id2label of a data set's task is the label space the pipeline's manifest lists
    for the windows that task trains on: class k means the same on both sides."""
    for task, record_task in FINETUNE_TASKS.items():
        cfg = load_config("cpu-tiny", "finetune", [f"task={task}"])
        labels = tuple(name for _, name in sorted(cfg.model_config().id2label.items()))
        assert labels == tuple(TASK_CLASSES[record_task]), task


def test_model_overrides_of_a_from_scratch_architecture_are_its_own_fields():
    cfg = load_config("cpu-small", "finetune", ["architecture=spectrogram_cnn", "model_overrides={spec_augment: 0.3}"])
    model_config = cfg.model_config()
    assert type(model_config).__name__ == "SpectrogramCNNConfig"
    assert (model_config.preset, model_config.spec_augment, model_config.head) == ("tiny", 0.3, "hms6")
    with pytest.raises(ConfigError, match="model_overrides: unknown field 'dropout'; allowed: .*spec_augment"):
        load_config("cpu-small", "finetune", ["architecture=spectrogram_cnn", "model_overrides={dropout: 0.2}"])
    with pytest.raises(ConfigError, match="SpectrogramCNNConfig.pooling: expected one of frequency, global"):
        load_config("cpu-small", "finetune", ["architecture=spectrogram_cnn", "model_overrides={pooling: max}"])


def test_compile_mode_is_one_of_torch_compiles_modes():
    cfg = load_config("base", "pretrain", ["compile_mode=reduce-overhead"])
    assert cfg.compile and cfg.compile_mode == "reduce-overhead"
    assert load_config("base", "pretrain").compile_mode == "default"
    expected = "compile_mode: expected one of 'default', 'reduce-overhead'.*got 'cudagraphs'"
    with pytest.raises(ConfigError, match=expected):
        load_config("base", "pretrain", ["compile_mode=cudagraphs"])


PRESET_VALUES = Path(__file__).with_name("preset_values.json")


@pytest.mark.parametrize("preset", ["cpu-tiny", "cpu-small", "base", "large-gpu"])
@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_inherited_presets_resolve_to_the_values_they_had_as_full_copies(preset, kind):
    """preset_values.json holds every preset's resolved config from when each was a full copy."""
    want = json.loads(PRESET_VALUES.read_text())[f"{preset}/{kind}"]
    assert json.loads(json.dumps(load_config(preset, kind).to_dict(), sort_keys=True)) == want


def test_a_preset_lists_only_what_differs_from_its_base():
    from eegfm.training.config import CONFIG_CLASSES
    from eegfm.training.config_files import CONFIG_DIR, read_section

    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        own = yaml.safe_load(path.read_text())
        if "base" not in own:
            continue
        for kind, cls in CONFIG_CLASSES.items():
            below = read_section(CONFIG_DIR / f"{own['base']}.yaml", kind, cls)
            for key, value in (own.get(kind) or {}).items():
                if isinstance(value, dict) and key in ("loader", "optim", "wandb"):
                    same = [k for k, v in value.items() if below.get(key, {}).get(k, object()) == v]
                    assert not same, (path.name, kind, key, same)
                else:
                    assert below.get(key, object()) != value, (path.name, kind, key)


def test_base_sections_merge_and_other_values_replace(tmp_path):
    (tmp_path / "parent.yaml").write_text(
        "pretrain:\n  model: tiny\n  model_overrides: {spatial_filters: 16}\n  loader: {batch_size: 4, seed: 3}\n"
        "  optim: {max_steps: 10}\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text("base: parent.yaml\npretrain:\n  model_overrides: {}\n  loader: {batch_size: 6}\n")
    config = load_config(child, "pretrain")
    assert (config.loader.batch_size, config.loader.seed, config.model_overrides) == (6, 3, {})
    (tmp_path / "parent.yaml").write_text("base: child.yaml\n")
    with pytest.raises(ConfigError, match="a cycle"):
        load_config(child, "pretrain")
