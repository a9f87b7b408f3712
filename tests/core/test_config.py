import dataclasses
import logging

import numpy as np
import pytest

from eegfm.core.config import Config, ConfigError, check_int, check_option, check_range
from eegfm.core.logs import get_logger, setup_logging


@dataclasses.dataclass
class Filter(Config):
    low_hz: float = 0.5
    high_hz: float = 70.0

    def validate(self):
        check_range("low_hz", self.low_hz, 0, None, low_inclusive=False)
        check_range("high_hz", self.high_hz, self.low_hz, 128, low_inclusive=False, high_inclusive=False)


@dataclasses.dataclass
class Job(Config):
    mode: str = "fast"
    channels: tuple[str, ...] = ("Fp1", "Fp2")
    band: Filter = dataclasses.field(default_factory=Filter)

    def validate(self):
        check_option("mode", self.mode, ("fast", "exact"))


def test_defaults_validate_and_round_trip_through_yaml(tmp_path):
    job = Job()
    path = tmp_path / "job.yaml"
    path.write_text(job.to_yaml())
    assert Job.from_yaml(path) == job
    assert job.config_hash() == Job.from_yaml(path).config_hash()
    assert job.config_hash() != job.replace(mode="exact").config_hash()


def test_nested_configs_and_tuples_load_from_yaml(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("mode: exact\nchannels: [Cz]\nband: {low_hz: 1.0, high_hz: 40}\n")
    job = Job.from_yaml(path)
    assert job.band == Filter(1.0, 40) and job.channels == ("Cz",)


def test_error_names_field_allowed_values_and_received():
    with pytest.raises(ConfigError, match=r"mode: expected one of 'fast', 'exact'; got 'slow'"):
        Job(mode="slow")
    with pytest.raises(ConfigError, match=r"high_hz: expected a value in \(0.5, 128\); got 200"):
        Filter(high_hz=200)
    with pytest.raises(ConfigError, match=r"low_hz: expected a number; got 'x'"):
        Filter(low_hz="x")
    with pytest.raises(ConfigError, match=r"low_hz: expected a value in \(0, inf\]; got nan"):
        Filter(low_hz=float("nan"))  # NaN passes every comparison with a bound as False


def test_unknown_fields_and_bad_files_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: fast\nmodee: exact\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: Job: unknown field\(s\) modee; allowed:"):
        Job.from_yaml(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("mode: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML"):
        Job.from_yaml(broken)
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read config file"):
        Job.from_yaml(tmp_path / "missing.yaml")


def test_logging_setup_is_idempotent_and_rejects_bad_levels(capsys):
    setup_logging("INFO")
    setup_logging("INFO")
    root = logging.getLogger()
    assert sum(getattr(h, "_eegfm", False) for h in root.handlers) == 1
    assert logging.getLogger("mne").level == logging.WARNING
    get_logger("test").info("hello from eegfm")
    assert "eegfm.test: hello from eegfm" in capsys.readouterr().err
    with pytest.raises(ValueError, match="log level: expected one of"):
        setup_logging("LOUD")


def test_check_int_takes_integers_from_the_bound_and_names_the_field():
    assert check_int("n", 3, 1) == 3 and check_int("n", np.int64(0), 0) == 0
    assert check_int("n", None, 1, optional=True) is None
    for bad in (0, True, 1.0, "2", None):
        with pytest.raises(ConfigError, match=rf"^n: expected an integer >= 1; got {bad!r}$".replace("(", r"\(")):
            check_int("n", bad, 1)
    with pytest.raises(ConfigError, match=r"^n: expected an integer >= 1 or None; got -1$"):
        check_int("n", -1, 1, optional=True)


def test_command_line_paths_expand_a_leading_tilde_everywhere(monkeypatch, tmp_path):
    # The shell leaves "~" alone in --output=~/x: the job made a folder named "~" in the working directory
    from eegfm.pipelines.job.preprocess import build_parser as preprocess_parser
    from eegfm.training.finetune import build_parser as finetune_parser
    from eegfm.training.pretrain import build_parser as pretrain_parser

    monkeypatch.setenv("HOME", str(tmp_path))
    args = preprocess_parser().parse_known_args(
        [
            "--input",
            "~/a",
            "~/b",
            "--output=~/out",
            "--pseudonym_key_file=~/k",
            "--artifact_model=~/ae.npz",
            "--config=~/c.yaml",
        ]
    )[0]
    assert args.input == [f"{tmp_path}/a", f"{tmp_path}/b"] and args.output == f"{tmp_path}/out"
    assert (args.pseudonym_key_file, args.artifact_model, args.config) == (
        f"{tmp_path}/k",
        f"{tmp_path}/ae.npz",
        f"{tmp_path}/c.yaml",
    )
    assert preprocess_parser().parse_known_args(["--input=gs://b/~x", "--output=s3://b/~y"])[0].output == "s3://b/~y"
    args = pretrain_parser().parse_args(["--data=~/d", "--output=~/o", "--config=~/c.yaml", "--resume=~/ckpt"])
    assert (args.data, args.output, args.config, args.resume) == (
        [f"{tmp_path}/d"],
        tmp_path / "o",
        f"{tmp_path}/c.yaml",
        f"{tmp_path}/ckpt",
    )
    from eegfm.simulate.cli import build_parser as simulate_parser

    assert simulate_parser().parse_args(["--output=~/corpus"]).output == tmp_path / "corpus"
    args = finetune_parser().parse_args(["--data=d", "--pretrained=~/p", "--output=~/o"])
    assert (args.pretrained, args.output, args.config, args.resume) == (
        f"{tmp_path}/p",
        tmp_path / "o",
        "cpu-tiny",
        "auto",
    )
