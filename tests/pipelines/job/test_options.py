from eegfm.pipelines.job.unknown_args import beam_option_names, describe, unrecognized
from eegfm.pipelines.readers import s3_anonymous  # noqa: F401 - registers --s3_anonymous, as the job does


def test_registered_beam_options_are_recognized_in_every_spelling():
    args = [
        "--runner",
        "DataflowRunner",
        "--direct_num_workers=2",
        "--dry_run",
        "True",
        "--s3_anonymous",
        "--experiments",
        "use_runner_v2",
        "--setup_file",
        "./setup.py",
        "--project",
        "p",
    ]
    assert unrecognized(args) == []
    assert {"--runner", "--direct_running_mode", "--s3_anonymous", "--temp_location"} <= set(beam_option_names())


def test_unknown_options_and_values_that_follow_no_option_are_found_in_order():
    args = ["--runner", "DirectRunner", "--windows_seconds", "5", "b.edf", "--lfreq=1", "--fast"]
    # A value after an unknown option cannot be told from a stray one: both are listed.
    assert unrecognized(args) == ["--windows_seconds", "5", "b.edf", "--lfreq=1", "--fast"]


def test_each_unrecognized_argument_is_described_with_the_nearest_names():
    own = ["--window_seconds", "--stride_seconds", "--l_freq", "--h_freq", "--input"]
    beam = ["--runner", "--direct_num_workers", "--num_workers", "--no_auth"]
    text = describe(
        ["--windows_seconds", "5", "--runer=Direct", "--notch", "--direct_num_worker", "2", "x.edf"], own, beam
    )
    assert text.startswith("unrecognized arguments: ")
    clauses = text[len("unrecognized arguments: ") :].split("; ")
    assert clauses[0] == ("--windows_seconds 5: not an eegfm-preprocess option or an Apache Beam pipeline option")
    assert clauses[1] == "did you mean --window_seconds?"
    assert clauses[2].startswith("--runer=Direct: ") and clauses[3] == "did you mean --runner?"
    # Nothing close enough among the command's own options, and Beam's must be closer still.
    assert clauses[4].startswith("--notch: ") and clauses[4].endswith("(--help lists eegfm's options)")
    assert clauses[5].startswith("--direct_num_worker 2: ") and clauses[6] == "did you mean --direct_num_workers?"
    assert (
        clauses[7] == "'x.edf': a value that follows no option (several inputs: --input A B ..., or --input repeated)"
    )


def test_no_spectrogram_switches_the_spectrogram_off_and_changes_the_config_hash(tmp_path):
    from eegfm.pipelines.job.options import build_parser, config_from_args, given_flags

    parser = build_parser()
    base = ["--input", "in", "--output", "out"]
    on = config_from_args(parser.parse_args(base), given_flags(parser, base))
    off_argv = [*base, "--no_spectrogram"]
    off = config_from_args(parser.parse_args(off_argv), given_flags(parser, off_argv))
    assert on.spectrogram is True and off.spectrogram is False
    assert on.config_hash() != off.config_hash()
    assert "--no_spectrogram" in parser.format_help() and "--spectrogram" in parser.format_help()
    (tmp_path / "job.yaml").write_text("spectrogram: false\n")  # a --config file's value stands
    from_file = [*base, "--config", str(tmp_path / "job.yaml")]
    assert config_from_args(parser.parse_args(from_file), given_flags(parser, from_file)).spectrogram is False
    flag_wins = [*from_file, "--spectrogram"]
    assert config_from_args(parser.parse_args(flag_wins), given_flags(parser, flag_wins)).spectrogram is True
