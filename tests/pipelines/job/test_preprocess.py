"""End to end: the Beam job on the real recordings in ../shared/data."""

import functools
import glob
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eegfm.contract import schema
from eegfm.contract.tfrecord import read_records
from eegfm.pipelines.datasets import expand_inputs
from eegfm.pipelines.job.launcher import earlier_run_outputs, local_runner, summarize, temporary_folders
from eegfm.pipelines.job.preprocess import run
from tests.conftest import run_lock_free_elsewhere, run_lock_held_elsewhere
from tests.pipelines.interrupted_job import signal_after_first_spill


def _records_by_tensorflow(out):
    import tensorflow as tf

    description = schema.tf_feature_description()
    records = []
    for path in sorted(glob.glob(os.path.join(out, "site-*", "part-*-of-*.tfrecord"))):
        for raw in tf.data.TFRecordDataset(path, compression_type="SNAPPY"):
            parsed = tf.io.parse_single_example(raw, description)
            parsed = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v for k, v in parsed.items()}
            records.append((path, parsed))
    return records


def test_every_input_is_accounted_for_exactly_once(shared_data, shared_run):
    out, manifest = shared_run
    sources = [entry["source"] for entry in manifest["inputs"]]
    assert sorted(sources) == expand_inputs([str(shared_data)])
    assert len(sources) == len(set(sources))
    status = {os.path.basename(e["source"]): e for e in manifest["inputs"]}
    assert status["Subject00_1.edf"]["status"] == "processed"
    assert status["1000913311.parquet"]["status"] == "processed"
    assert status["S001R03.edf"]["status"] == "processed"
    bv, fif = status["test_NO.vhdr"], status["sample_invalid_birthday_raw.fif"]
    assert bv["status"] == fif["status"] == "quarantined"
    assert "test_NO.vhdr: only 0 of the 19 10-20 channels are present" in bv["reason"]
    assert "Channels found: '1', '2', '3'" in bv["reason"]
    assert "Channels found: 'EEG 001'" in fif["reason"]
    assert status["test_NO.eeg"]["status"] == "ignored"
    counts = manifest["counts"]
    assert counts["inputs"] == counts["processed"] + counts["quarantined"] + counts["ignored"]
    # quarantine.jsonl has one line per quarantined or ignored input and per rejected window.
    lines = [json.loads(line) for line in open(out / "quarantine.jsonl")]
    inputs = [q for q in lines if q["kind"] in ("input", "ignored")]
    assert len(inputs) == counts["quarantined"] + counts["ignored"]
    assert len([q for q in lines if q["kind"] == "window"]) == counts["rejected_windows"]


def test_a_missing_key_file_is_created_only_when_asked(shared_data, tmp_path, capsys):
    # A mistyped key path must not silently start a new key (pseudonyms matching no earlier run).
    key = tmp_path / "keys" / "site.key"
    base = [
        "--input",
        str(shared_data / "eegmmi" / "S001R03.edf"),
        "--output",
        str(tmp_path / "out"),
        "--pseudonym_key_file",
        str(key),
    ]
    with pytest.raises(SystemExit) as exit_:
        run(base)
    assert exit_.value.code == 2 and not key.exists()
    assert (
        f"--pseudonym_key_file {key}: no such file; for a first run pass --create_key_file" in capsys.readouterr().err
    )
    manifest = run([*base, "--create_key_file"])
    assert manifest["counts"]["processed"] == 1
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes().strip()) == 64
    again = run([*base, "--output", str(tmp_path / "again"), "--create_key_file"])  # kept, not replaced
    assert again["sites"] == manifest["sites"]  # the same pseudonyms


def test_an_earlier_runs_outputs_are_kept_apart_or_overwritten(shared_data, key_file, tmp_path, capsys):
    # Shard counts vary between runs (inputs, --max_shard_mb): stale shards would be read as this run's.
    edf, out = shared_data / "eegmat" / "Subject00_1.edf", tmp_path / "out"
    assert earlier_run_outputs(str(tmp_path / "none")) == []
    base = ["--input", str(edf), "--output", str(out), "--pseudonym_key_file", key_file]
    first = run([*base, "--max_shard_mb", "0.5", "--report"])
    shards = sorted(out.glob("site-*/part-*-of-*.tfrecord"))
    assert len(shards) == len(first["shards"]) == 4
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"  # --report: the data-quality picture
    # What runs that stopped early (a killed machine) left: kept and reported, deleted by --overwrite.
    (out / ".spill-0123456789ab").mkdir()
    (out / ".spill-0123456789ab" / "x.tfrecord").write_bytes(b"\0" * 2_000_000)
    (out / "beam-temp-sites-0123").mkdir()
    assert set(temporary_folders(str(out))) == {str(out / ".spill-0123456789ab"), str(out / "beam-temp-sites-0123")}
    with pytest.raises(SystemExit) as exit_:
        run(base)
    assert exit_.value.code == 2
    assert (
        f"--output {out}: holds an earlier run's outputs (4 TFRecord shard(s), manifest.json, "
        "quarantine.jsonl, report.png); this run's shards would mix with them. Pass --overwrite"
    ) in capsys.readouterr().err
    assert sorted(out.glob("site-*/part-*-of-*.tfrecord")) == shards  # nothing touched
    assert len(temporary_folders(str(out))) == 2
    second = run([*base, "--overwrite"])
    assert temporary_folders(str(out)) == {}
    assert [p.name for p in out.glob("site-*/part-*-of-*.tfrecord")] == ["part-00000-of-00001.tfrecord"]
    assert second["counts"]["windows"] == first["counts"]["windows"] > 10
    assert earlier_run_outputs(str(out)) == sorted(  # the first run's report went with its shards
        [str(out / "manifest.json"), str(out / "quarantine.jsonl"), str(out / second["shards"][0])]
    )


def test_a_second_run_into_a_running_jobs_output_folder_is_refused(shared_data, key_file, tmp_path, capsys):
    out = tmp_path / "out"
    with run_lock_held_elsewhere(out) as holder:
        with pytest.raises(SystemExit) as exit_:  # --overwrite must not delete a running job's files
            run(
                [
                    "--input",
                    str(shared_data / "eegmat" / "Subject00_1.edf"),
                    "--output",
                    str(out),
                    "--pseudonym_key_file",
                    key_file,
                    "--overwrite",
                ]
            )
        assert exit_.value.code == 2
        assert f"--output {out}: another run is writing to this folder (pid {holder.pid} on " in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [".eegfm-run.lock"]
    # Once the holder is gone the folder is free; a run that ends gives it back to other processes
    assert (
        run(
            [
                "--input",
                str(shared_data / "eegmat" / "Subject00_2.edf"),
                "--output",
                str(out),
                "--pseudonym_key_file",
                key_file,
            ]
        )["counts"]["windows"]
        > 0
    )
    assert run_lock_free_elsewhere(out)


def test_the_summary_counts_what_the_run_wrote(shared_run):
    out, manifest = shared_run
    rows = dict(line.strip().split("  ", 1) for line in summarize(manifest, 2.0).splitlines())
    files = sorted(str(p.relative_to(out)) for p in out.glob("site-*/part-*-of-*.tfrecord"))
    assert manifest["shards"] == files
    # each shard's records and bytes, which training checks the files against
    assert manifest["shard_bytes"] == {f: (out / f).stat().st_size for f in files}
    assert sorted(manifest["shard_records"]) == files
    assert sum(manifest["shard_records"].values()) == manifest["counts"]["windows"]
    assert int(rows["TFRecord files"]) == len(files) and int(rows["sites"]) == len({f.split("/")[0] for f in files})
    assert int(rows["windows written"]) == manifest["counts"]["windows"]
    assert rows["quarantined"].strip() == f"{manifest['counts']['quarantined']} (reasons in quarantine.jsonl)"
    assert rows["wall time"].strip() == "2.0 s"
    assert rows["EEG hours in windows"].strip() == f"{manifest['counts']['window_eeg_hours']:.3f}"
    overlapping = {**manifest, "counts": {**manifest["counts"], "input_eeg_hours": 0.5, "window_eeg_hours": 0.9}}
    assert "0.900 (windows overlap" in summarize(overlapping, 2.0)
    # the BioSemi test file's cap puts electrodes at 8 sites only, fewer than --min_channels: quarantined
    assert manifest["counts"]["caps"] == {} and "placed by cap layout" not in rows
    placed = {**manifest, "counts": {**manifest["counts"], "caps": {"biosemi128": 2, "file": 1}}}
    assert "placed by cap layout             biosemi128 2, file 1" in summarize(placed, 2.0)


def test_tensorflow_reads_every_record_with_the_contract(shared_run):
    out, manifest = shared_run
    records = _records_by_tensorflow(out)
    assert len(records) == manifest["counts"]["windows"] > 700
    for path, ex in records:
        shape = ex["shape"].numpy().tolist()
        assert shape[0] == 19 and ex["sfreq"].numpy() == 256.0
        eeg = np.frombuffer(ex["eeg"].numpy(), dtype="<f2").reshape(shape)
        assert np.isfinite(eeg).all() and 1.0 < float(eeg.astype(np.float32).std()) < 500.0
        assert ex["channel_mask"].numpy().shape == (19,)
        assert len(ex["quality"].numpy()) == len(manifest["quality_names"])
        assert 0.0 <= float(ex["artifact_score"].numpy()) <= 1.0
        assert os.path.basename(os.path.dirname(path)) == ex["site_id"].numpy().decode()
    # eegmmi's two runs: a 4 s trial window at each T1 (8) and T2 (7) annotation, movement in run 3
    # and imagery in run 4, left or right fist
    labels = manifest["counts"]["per_label"]
    assert set(labels) == {
        "eegmat_rest_task:0",
        "eegmat_rest_task:1",
        "unlabeled:-1",
        "eegmmi_movement:0",
        "eegmmi_movement:1",
        "eegmmi_imagery:0",
        "eegmmi_imagery:1",
    }
    assert [labels[f"eegmmi_{kind}:{k}"] for kind in ("movement", "imagery") for k in (0, 1)] == [8, 7, 8, 7]
    assert os.path.exists(out / "artifact_ae.npz") and manifest["artifact_model"] == "artifact_ae.npz"
    # Each input's recorded SHA-256 is its file's (the provenance every record carries).
    hashed = [d for d in manifest["inputs"] if d.get("source_sha256")]
    assert len(hashed) >= 64 and all(
        d["source_sha256"] == hashlib.sha256(open(d["source"], "rb").read()).hexdigest() for d in hashed
    )


def test_same_inputs_give_identical_shards_in_memory_and_on_two_processes(shared_data, key_file, tmp_path):
    inputs = [
        "--input",
        str(shared_data / "eegmmi"),
        "--input",
        str(shared_data / "hms"),
        "--input",
        str(shared_data / "eegmat" / "Subject1*_2.edf"),
    ]
    common = ["--pseudonym_key_file", key_file, "--runner", "DirectRunner"]
    run(inputs + common + ["--output", str(tmp_path / "a"), "--direct_running_mode", "in_memory"])
    # Worker processes import eegfm as installed in the venv, as a real deployment would.
    env = dict(os.environ)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.pipelines.job.preprocess",
            *inputs,
            *common,
            "--output",
            str(tmp_path / "b"),
            "--direct_running_mode",
            "multi_processing",
            "--direct_num_workers",
            "2",
            "--verbose",
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    # Two worker processes ran it, on Beam's FnApiRunner: Beam's DirectRunner would first try
    # to download its Prism runner binary from GitHub.
    log = done.stderr.decode(errors="replace")
    assert (
        log.count(
            "Created Worker handler <apache_beam.runners.portability.fn_api_runner."
            "worker_handlers.SubprocessSdkWorkerHandler"
        )
        == 2
    )
    assert "prism" not in log.lower()
    # Every recording finished in a worker process was counted by the launcher's progress report.
    started = re.search(r"eegfm.preprocess: (\d+) recordings", log)
    assert started and f"progress: {started[1]}/{started[1]} recordings (100%)" in log

    # The same files, byte for byte: same names, same records in the same order (the shards are
    # planned from the recordings, not from how the runner split the work), so training on
    # either output gives the same model.
    def shards(out):
        return {
            os.path.relpath(path, out): open(path, "rb").read()
            for path in glob.glob(str(out / "site-*" / "part-*.tfrecord"))
        }

    a, b = shards(tmp_path / "a"), shards(tmp_path / "b")
    assert (
        len(a) >= 3
        and sum(len(list(read_records(path))) for path in glob.glob(str(tmp_path / "a" / "site-*" / "part-*.tfrecord")))
        > 20
    )
    assert sorted(a) == sorted(b) and all(a[name] == b[name] for name in a)


def test_dataflow_job_graph_builds_offline(shared_data, key_file, tmp_path):
    # The launcher builds and validates the Dataflow graph; --dry_run stops before submitting.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.pipelines.job.preprocess",
            "--input",
            str(shared_data / "eegmmi"),
            "--output",
            "gs://eegfm-test-bucket/out",
            "--pseudonym_key_file",
            key_file,
            "--runner",
            "DataflowRunner",
            "--dry_run",
            "True",
            "--project",
            "eegfm-test",
            "--region",
            "europe-west4",
            "--temp_location",
            "gs://eegfm-test-bucket/tmp",
            "--setup_file",
            "./setup.py",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Beam stages eegfm with `python -m build --no-isolation` (pinned, offline), not a failed
    # attempt at it followed by the legacy `setup.py sdist`.
    assert "No module named build" not in result.stderr and "Building sdist" in result.stderr


@pytest.mark.slow  # Beam with two workers killed mid-run: 30 s
def test_ctrl_c_stops_a_two_worker_run_cleanly_and_removes_what_it_wrote(shared_data, key_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".spill-earlier00000").mkdir()  # a killed run's: the run, holding the lock, clears it
    # eegmat's files linked at three sites: about 6 s of work, so the Ctrl-C below lands mid-run
    # however late this process sees the first spilled recording (twice, in a full suite, the 2 s
    # of one copy had ended before it did). Links to files: a second link to a folder is not followed.
    corpus = tmp_path / "corpus"
    for site in ("a", "b", "c"):
        (corpus / site).mkdir(parents=True)
        for edf in (shared_data / "eegmat").glob("*.edf"):
            (corpus / site / edf.name).symlink_to(edf)
    argv = ["--input", str(corpus), "--output", str(out), "--pseudonym_key_file", key_file]
    argv += ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]
    job, stdout, stderr = signal_after_first_spill(argv, out, signal.SIGINT)
    assert job.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "eegfm-preprocess: interrupted"
    assert "Traceback" not in stderr and "wrote" not in stdout
    assert re.search(
        r"stopped before the end: removed this run's [12] temporary folder\(s\) and \d+ finished file", stderr
    )
    # the run folder's lock file stays (deleting it could let two later runs both take a lock)
    assert sorted(path.name for path in out.iterdir()) == [".eegfm-run.lock"]
    # The workers went with the job.
    left = subprocess.run(["pgrep", "-s", str(job.pid)], capture_output=True, text=True).stdout.split()
    assert left == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "tuh"], "argument --dataset: invalid choice: 'tuh'"),
        (["--line_freq", "55"], "argument --line_freq: invalid choice: '55'"),
        (["--montage", "GSN-HydroCel-130"], "argument --montage: invalid choice: 'GSN-HydroCel-130'"),
        (["--h_freq", "140"], "h_freq"),
        (["--num_shards", "-1"], "--num_shards: expected an integer >= 0"),
        (["--max_shard_mb", "0"], "--max_shard_mb: expected a number of MiB > 0; got 0.0"),
        (["--ae_sample_size", "40"], "--ae_sample_size: expected an integer >= 48; got 40"),
        (
            ["--ae_train_sites", "eegmmi,boston"],
            "--ae_train_sites: boston: no such site among the inputs; expected some of eegmmi",
        ),
        (
            ["--artifact_model", "no-such-model.npz"],
            "--artifact_model no-such-model.npz: cannot load it as the artifact autoencoder of an earlier run "
            "(FileNotFoundError",
        ),
        # Beam alone would warn and run on without them: 10 s windows, or one input left out.
        (
            ["--windows_seconds", "5"],
            "--windows_seconds 5: not an eegfm-preprocess option or an Apache Beam "
            "pipeline option; did you mean --window_seconds?",
        ),
        (["--direct_num_worker", "2"], "did you mean --direct_num_workers?"),
        (["stray.edf"], "'stray.edf': a value that follows no option"),
    ],
)
def test_bad_arguments_fail_before_any_work(shared_data, key_file, tmp_path, args, message):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.pipelines.job.preprocess",
            "--input",
            str(shared_data / "eegmmi"),
            "--output",
            str(tmp_path / "out"),
            "--pseudonym_key_file",
            key_file,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_too_few_windows_for_the_autoencoder_leave_the_rules_to_score(shared_data, key_file, tmp_path, caplog):
    # 3 recordings give 42 training windows: more than the 32 the job once asked for, fewer than
    # the 48 the autoencoder needs. That fit used to fail the whole job after all its work.
    inputs = [str(shared_data / "eegmat" / name) for name in ("Subject00_1.edf", "Subject00_2.edf", "Subject01_1.edf")]
    with caplog.at_level("INFO", logger="eegfm.preprocess"):
        manifest = run(
            [
                "--input",
                *inputs[:2],
                "--input",
                inputs[2],
                "--output",
                str(tmp_path / "out"),
                "--pseudonym_key_file",
                key_file,
                "--direct_running_mode",
                "in_memory",
                "--keep_paths",  # the start line names the data set folder
            ]
        )
    assert manifest["counts"]["processed"] == 3 and 32 < manifest["counts"]["windows"] < 48
    assert (
        f"artifact autoencoder not fitted: {manifest['counts']['windows']} training windows, fewer than the 48 "
        "it needs; windows are scored by the rules only"
    ) in caplog.messages
    assert any(m.startswith("3 recordings (eegmat=eegmat), 0 other files; writing to") for m in caplog.messages)
    assert manifest["artifact_model"] is None and not (tmp_path / "out" / "artifact_ae.npz").exists()
    rows = dict(line.strip().split("  ", 1) for line in summarize(manifest, 1.0).splitlines())
    assert rows["artifact model"].strip() == "none (rules only)"
    records = [
        schema.decode_example(raw)
        for shard in manifest["shards"]
        for raw in read_records(tmp_path / "out" / shard, "SNAPPY")
    ]
    assert len(records) == manifest["counts"]["windows"]
    ae_score = manifest["quality_names"].index("ae_score")
    assert all(r.quality[ae_score] == -1.0 and 0.0 <= r.artifact_score <= 1.0 for r in records)


def test_an_output_folder_and_key_inside_the_input_folder_are_never_inputs(shared_data, tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    key = tmp_path / "raw" / "pseudonym.key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    args = [
        "--input",
        str(tmp_path / "raw"),
        "--output",
        str(tmp_path / "raw" / "out"),
        "--pseudonym_key_file",
        str(key),
        "--direct_running_mode",
        "in_memory",
        "--overwrite",
        "--keep_paths",
    ]
    first = run(args)
    second = run(args)  # the first run's shards, manifest and quarantine lie below the input now
    assert (
        [e["source"] for e in second["inputs"]]
        == [e["source"] for e in first["inputs"]]
        == [str(tmp_path / "raw" / "a.edf")]
    )
    assert second["counts"]["processed"] == 1 and second["counts"]["quarantined"] == 0


def test_an_eeglab_recording_gives_the_windows_of_the_edf_it_was_made_from(shared_data, key_file, tmp_path):
    from eegfm.pipelines.readers import open_recording
    from tests.pipelines.readers.test_readers import _write_eeglab

    edf = shared_data / "eegmat" / "Subject00_2.edf"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.edf").symlink_to(edf)
    with open_recording(edf) as reader:
        _write_eeglab(
            tmp_path / "in" / "b.set",
            reader.read(),
            [n.split(" ", 1)[-1] for n in reader.info.ch_names],
            reader.info.sfreq,
        )
    manifest = run(
        [
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--pseudonym_key_file",
            key_file,
            "--direct_running_mode",
            "in_memory",
            "--no_artifact_model",
        ]
    )
    assert manifest["counts"]["processed"] == 2 and manifest["counts"]["quarantined"] == 0
    by_recording = {}
    for shard in manifest["shards"]:
        for raw in read_records(tmp_path / "out" / shard, "SNAPPY"):
            record = schema.decode_example(raw)
            by_recording.setdefault(record.recording_id, {})[record.window_start_index] = record.eeg
    a, b = by_recording.values()
    assert sorted(a) == sorted(b) and len(a) == 6
    for start in a:  # equal within float16 rounding of the stored samples
        np.testing.assert_allclose(a[start].astype(np.float32), b[start].astype(np.float32), rtol=1e-3, atol=0.02)


def test_an_output_folder_that_cannot_be_made_is_a_clear_error(shared_data, key_file, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_:
        run(
            [
                "--input",
                str(shared_data / "eegmat" / "Subject00_1.edf"),
                "--output",
                str(blocker / "out"),
                "--pseudonym_key_file",
                key_file,
            ]
        )
    assert exit_.value.code == 2
    assert f"--output {blocker / 'out'}: cannot create the output folder (Not a directory)" in capsys.readouterr().err


def test_bad_input_corpus_is_quarantined_file_by_file_and_good_files_still_run(shared_data, key_file, tmp_path):
    from tests.pipelines.bad_corpus import make_bad_corpus

    expected = make_bad_corpus(tmp_path / "bad", shared_data)
    good = shared_data / "eegmat" / "Subject07_2.edf"
    manifest = run(
        [
            "--input",
            str(tmp_path / "bad"),
            "--input",
            str(good),
            "--dataset",
            "edf",
            "--output",
            str(tmp_path / "out"),
            "--pseudonym_key_file",
            key_file,
            "--runner",
            "DirectRunner",
            "--direct_running_mode",
            "in_memory",
            "--keep_paths",  # the reasons are found by file name
        ]
    )
    by_name = {os.path.basename(e["source"]): e for e in manifest["inputs"]}
    assert set(by_name) == set(expected) | {"Subject07_2.edf"}
    assert by_name["Subject07_2.edf"]["status"] == "processed"
    assert manifest["counts"]["windows"] == by_name["Subject07_2.edf"]["windows"] == 6
    for name, text in expected.items():
        entry = by_name[name]
        assert entry["status"] == "quarantined", (name, entry)
        assert entry["reason"].startswith(f"{name}: "), (name, entry["reason"])
        assert text in entry["reason"], (name, entry["reason"])
    lines = [json.loads(line) for line in open(tmp_path / "out" / "quarantine.jsonl")]
    assert {os.path.basename(q["path"]) for q in lines if q["kind"] == "input"} == set(expected)


def test_a_recording_that_fails_part_way_sends_none_of_its_spilled_windows(
    shared_data, key_file, tmp_path, fails_on_second_chunk
):
    from apache_beam.pvalue import TaggedOutput

    from eegfm.pipelines.datasets import discover
    from eegfm.pipelines.job import process
    from eegfm.pipelines.job.stages import ProcessRecordingFn

    calls = fails_on_second_chunk
    (item,) = [i for i in discover([str(shared_data / "eegmat")])[0] if i.path.endswith("Subject00_1.edf")]
    spill = tmp_path / "spill"
    spill.mkdir()
    fn = ProcessRecordingFn(key_file, process.PreprocessConfig(chunk_seconds=30.0), str(spill))
    fn.setup()
    try:
        out = list(fn.process(item))
    finally:
        fn.teardown()
    # Only the outcome comes out: no spilled recording (its windows would reach the shards of a
    # run whose manifest calls the input quarantined), and no spill file is left
    (outcome,) = [o.value for o in out if isinstance(o, TaggedOutput)]
    assert len(out) == 1 and (outcome.status, outcome.stage, outcome.windows) == ("quarantined", "unexpected", 0)
    assert len(calls) == 2 and not list(spill.iterdir())


@pytest.fixture(scope="module")
def simulated_run(key_file, tmp_path_factory):
    """simulate -> preprocess, the way a user runs eegfm on the built-in corpus."""
    from eegfm.simulate.cli import main as simulate

    root = tmp_path_factory.mktemp("sim")
    corpus = root / "corpus"
    assert (
        simulate(
            [
                "--output",
                str(corpus),
                "--sites",
                "4",
                "--subjects-per-site",
                "1",
                "--recordings-per-subject",
                "1",
                "--minutes",
                "3",
                "--seed",
                "3",
                "--quiet",
            ]
        )
        == 0
    )
    out = root / "tfr"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eegfm.pipelines.job.preprocess",
            "--input",
            str(corpus / "edf"),
            "--input",
            str(corpus / "hms"),
            "--output",
            str(out),
            "--pseudonym_key_file",
            key_file,
            "--runner",
            "DirectRunner",
            "--direct_running_mode",
            "in_memory",
            "--verbose",
        ],
        capture_output=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return corpus, out, result.stdout + result.stderr


def test_simulated_corpus_runs_end_to_end_with_labels_and_sites(simulated_run):
    corpus, out, logs = simulated_run
    # Python's default format ("WARNING:eegfm.preprocess:...") means a second handler on the root
    # logger: every line would be written twice.
    assert b"eegfm.preprocess: 8 recordings" in logs
    assert not re.search(rb"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):", logs, re.M)
    manifest = json.loads((out / "manifest.json").read_text())
    recordings = [e for e in manifest["inputs"] if e["status"] != "ignored"]
    assert len(recordings) == 8 and all(e["status"] == "processed" for e in recordings), [
        (e["source"], e.get("reason")) for e in recordings if e["status"] != "processed"
    ]
    assert len(manifest["sites"]) == 4 and len(manifest["counts"]["per_site"]) == 4
    # The manifest names the artifact model only if one was fitted and written.
    assert (manifest["artifact_model"] == "artifact_ae.npz") == (out / "artifact_ae.npz").exists()
    labels = {k for k in manifest["counts"]["per_label"] if k.startswith("hms6:")}
    assert len(labels) >= 3
    truth = [json.loads(line) for line in open(corpus / "truth.jsonl")]
    missing = {m for t in truth for m in t.get("missing_channels", [])}
    interpolated = {c for e in recordings for c in e["interpolated"]}
    assert missing and missing <= interpolated
    records = _records_by_tensorflow(out)
    assert len(records) == manifest["counts"]["windows"]
    hms = [ex for _, ex in records if ex["task"].numpy() == b"hms6"]
    assert hms and all(ex["votes"].numpy().shape == (6,) for ex in hms)
    assert all(int(ex["shape"].numpy()[1]) == 50 * 256 for ex in hms)
    # HMS parquets' windows carry their 3 min Kaggle spectrogram (90 frames from offset 0); the
    # EDF export's the 25 frames computed from their 50 s
    assert {int(ex["spectrogram_frames"].numpy()) for ex in hms} == {25, 90}


def test_planted_identifiers_reach_no_output_and_no_log(simulated_run):
    corpus, out, logs = simulated_run
    planted = json.loads((corpus / "identifiers.json").read_text())["recordings"]
    needles = sorted({s.encode() for rec in planted for s in rec["search_strings"] if len(s) >= 4})
    assert len(needles) >= 20
    # Control: the identifiers really are in the inputs, so finding none below means something.
    headers = b"".join(p.read_bytes()[:4096] for p in (corpus / "edf").rglob("*.edf"))
    assert sum(n in headers for n in needles) >= len(needles) // 2
    haystacks = {"logs": logs}
    for path in out.rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes()
            if path.suffix == ".tfrecord":
                haystacks[f"{path} (decompressed)"] = b"".join(read_records(path))
    assert any(k.endswith("(decompressed)") for k in haystacks)
    leaks = [(name, n.decode()) for name, blob in haystacks.items() for n in needles if n in blob]
    assert not leaks, leaks[:10]


def test_local_runner_is_the_fn_api_runner_and_other_runners_are_left_to_beam():
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    for args in ([], ["--runner", "DirectRunner"], ["--direct_running_mode", "multi_processing"]):
        assert isinstance(local_runner(PipelineOptions(args)), FnApiRunner)
    assert local_runner(PipelineOptions(["--runner", "DataflowRunner"])) is None


def test_the_start_log_line_names_few_folders_and_counts_many():
    from eegfm.pipelines.job.launcher import _describe_datasets
    from eegfm.pipelines.job.manifest import count as _count

    assert _describe_datasets({"b": "edf", "a": "eegmat"}) == "a=eegmat, b=edf"
    assert (_count(1, "recording"), _count(0, "other file"), _count(2, "other file")) == (
        "1 recording",
        "0 other files",
        "2 other files",
    )
    many = {f"patient{i:04d}": "edf" for i in range(2000)} | {"hms": "hms"}
    assert _describe_datasets(many) == "edf in 2000 folders, hms in 1 folder"


def test_a_config_file_is_overridden_only_by_the_flags_given(shared_data, tmp_path):
    """Flags left at their defaults used to replace the file's values: a YAML window_seconds: 4
    ran 10 s windows without a word."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (tmp_path / "job.yaml").write_text(
        "window_seconds: 4\nstride_seconds: 4\nline_freq: 60\nh_freq: 45\nquality:\n  max_artifact_score: 0.9\n"
    )
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    manifest = run(
        [
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--pseudonym_key_file",
            str(key),
            "--no_artifact_model",
            "--config",
            str(tmp_path / "job.yaml"),
            "--h_freq",
            "40",
            "--repair_channels",
            "0",
            "--montage",
            "mgh70",
        ]
    )
    config = manifest["config"]
    assert (config["window_seconds"], config["stride_seconds"], config["line_freq"]) == (4.0, 4.0, 60)
    assert config["h_freq"] == 40.0 and config["quality"]["max_artifact_score"] == 0.9
    assert config["repair_channels"] == 0 and config["montage"] == "mgh70"  # a 10-20 recording keeps its names
    assert manifest["counts"]["windows"] == int(62 // 4)


def test_windows_lie_end_to_end_unless_a_stride_is_given_and_gaps_are_warned_of(shared_data, tmp_path, caplog):
    """--window_seconds 5 alone used to keep the 10 s stride: half of every recording in no window,
    without a word. The stride follows the window unless given (or a YAML file overlaps windows),
    and a stride longer than the window is warned of."""
    from eegfm.pipelines.job.options import build_parser, config_from_args, given_flags
    from eegfm.pipelines.job.process import PreprocessConfig

    def config(argv, yaml_text=None):
        if yaml_text is not None:
            (tmp_path / "job.yaml").write_text(yaml_text)
            argv = argv + ["--config", str(tmp_path / "job.yaml")]
        argv = ["--input", "x", "--output", "y"] + argv
        parser = build_parser()
        args, _ = parser.parse_known_args(argv)
        made = config_from_args(args, given_flags(parser, argv))
        return made.window_seconds, made.stride_seconds

    assert config([]) == (10.0, 10.0) and config(["--window_seconds", "5"]) == (5.0, 5.0)
    assert config(["--window_seconds", "5", "--stride_seconds", "2.5"]) == (5.0, 2.5)
    assert config(["--window_seconds", "8"], "window_seconds: 4\n") == (8.0, 8.0)
    assert config(["--window_seconds", "8"], "window_seconds: 4\nstride_seconds: 2\n") == (8.0, 2.0)
    assert config([], "window_seconds: 4\n") == (4.0, 4.0)
    assert PreprocessConfig(window_seconds=5.0).stride_seconds == 5.0
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")  # 62 s
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    counts = {}
    for name, extra in (("end-to-end", []), ("gaps", ["--stride_seconds", "10"])):
        caplog.clear()
        with caplog.at_level("WARNING", logger="eegfm.preprocess"):
            manifest = run(
                [
                    "--input",
                    str(tmp_path / "in"),
                    "--output",
                    str(tmp_path / name),
                    "--pseudonym_key_file",
                    str(key),
                    "--no_artifact_model",
                    "--window_seconds",
                    "5",
                    *extra,
                ]
            )
        counts[name] = manifest["counts"]["windows"], "between windows are in none of them" in caplog.text
    assert counts == {"end-to-end": (12, False), "gaps": (6, True)}


def test_folders_whose_names_look_like_patterns_are_read_and_written(shared_data, tmp_path):
    """'[2019]' or '[x]' in a folder name is a character class to Beam's and glob's patterns: the
    input folder matched no files, and the job lost its own shards before the manifest."""
    from eegfm.training.data import list_files

    inputs = tmp_path / "EEG [2019]" / "ward *1"
    inputs.mkdir(parents=True)
    (inputs / "rec [a]?.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (tmp_path / "EEG 2").mkdir()  # what "EEG [2019]" matches as a pattern: a name not to be read
    (tmp_path / "EEG 2" / "other.edf").symlink_to(shared_data / "eegmat" / "Subject01_2.edf")
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    out = tmp_path / "out [x]"
    for extra in ([], ["--overwrite"]):  # the second run finds and deletes the first one's files
        manifest = run(
            [
                "--input",
                str(tmp_path / "EEG [2019]"),
                "--output",
                str(out),
                "--pseudonym_key_file",
                str(key),
                "--no_artifact_model",
                "--keep_paths",
                *extra,
            ]
        )
        assert [(e["source"], e["status"]) for e in manifest["inputs"]] == [(str(inputs / "rec [a]?.edf"), "processed")]
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
            "manifest.json",
            "quarantine.jsonl",
            manifest["sites"][0],
        ]
    shards = list_files(str(out))
    assert len(shards) == 1 and sum(1 for _ in read_records(shards[0])) == manifest["counts"]["windows"] > 0
    # A file given by its name is that file, not a pattern.
    single = run(
        [
            "--input",
            str(inputs / "rec [a]?.edf"),
            "--output",
            str(tmp_path / "single"),
            "--pseudonym_key_file",
            str(key),
            "--no_artifact_model",
            "--keep_paths",
        ]
    )
    assert [e["source"] for e in single["inputs"]] == [str(inputs / "rec [a]?.edf")]


def test_a_local_dry_run_lists_the_plan_and_writes_nothing(shared_data, tmp_path, capsys):
    """--dry_run is a Dataflow option (build the graph, submit nothing); the local runner ignored
    it and ran the whole job."""
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    out = tmp_path / "out"
    assert (
        run(
            [
                "--input",
                str(shared_data / "formats"),
                "--output",
                str(out),
                "--pseudonym_key_file",
                str(key),
                "--dry_run",
                "True",
                "--keep_paths",
            ]
        )
        == {}
    )
    assert not out.exists()
    plan = capsys.readouterr().out
    assert plan.startswith(f"eegfm-preprocess --dry_run: nothing read or written; {out} would receive\n")
    assert "  14 recordings (0 with labels) from edf in 10 folders" in plan
    assert "    site 'fif'                    edf      2" in plan
    assert "test_NO.vmrk: data part of another recording (.vmrk), read through its header file" in plan
    assert "test_CA_208.evt: ANT Neuro part of the recording test_CA_208.cnt (.evt), read with it" in plan
    for ext in ("cef", "dpa"):
        assert f"Curry 8.cdt.{ext}: Curry part of the recording test_bdf_stim_channel Curry 8.cdt (.cdt.{ext})" in plan


def test_one_job_over_several_benchmark_corpora_labels_each_by_its_own_layout(shared_data, key_file, tmp_path):
    """The layouts of TUEV, CHB-MIT (bipolar), Siena and EEGMMI side by side under one input folder,
    over real recordings: auto detects each, and every window carries its corpus's labels."""
    from tests.pipelines.job.test_process import _chb_mit_edf

    root = tmp_path / "corpora"
    tuev = root / "tuev" / "edf" / "eval" / "032"
    chbmit, siena, eegmmi = root / "chbmit" / "chb01", root / "siena" / "PN01", root / "eegmmi" / "S001"
    for folder in (tuev, chbmit, siena, eegmmi):
        folder.mkdir(parents=True)
    (tuev / "spsw_032_a_.edf").symlink_to(shared_data / "eegmat" / "Subject00_2.edf")
    (tuev / "spsw_032_a_.rec").write_text("3,20.0,21.0,1\n4,20.0,21.0,1\n0,40.0,41.0,6\n")
    _chb_mit_edf(shared_data / "eegmat" / "Subject01_2.edf", chbmit / "chb01_03.edf")
    (chbmit / "chb01-summary.txt").write_text(
        "File Name: chb01_03.edf\nNumber of Seizures in File: 1\n"
        "Seizure Start Time: 25 seconds\nSeizure End Time: 47 seconds\n"
    )
    (root / "chbmit" / "SUBJECT-INFO").write_text("Case\tGender\tAge (years)\nchb01\tF\t11\n")
    (siena / "PN01-1.edf").symlink_to(shared_data / "eegmat" / "Subject02_2.edf")
    (siena / "Seizures-list-PN01.txt").write_text(
        "File name: PN01-1.edf\nRegistration start time: 08.00.00\n"
        "Seizure start time: 08.00.30\nSeizure end time: 08.00.50\n"
    )
    (eegmmi / "S001R04.edf").symlink_to(shared_data / "eegmmi" / "S001R04.edf")
    out = tmp_path / "out"
    manifest = run(
        [
            "--input",
            str(root),
            "--output",
            str(out),
            "--pseudonym_key_file",
            key_file,
            "--runner",
            "DirectRunner",
            "--direct_running_mode",
            "in_memory",
            "--keep_paths",
        ]
    )
    assert manifest["counts"]["processed"] == 4 and manifest["counts"]["quarantined"] == 0
    by_name = {os.path.basename(e["source"]): e for e in manifest["inputs"]}
    assert {name: e["dataset"] for name, e in by_name.items() if name.endswith(".edf")} == {
        "spsw_032_a_.edf": "tuev",
        "chb01_03.edf": "chbmit",
        "PN01-1.edf": "siena",
        "S001R04.edf": "eegmmi",
    }
    assert len(by_name["chb01_03.edf"]["bipolar"]["electrodes"]) == 18
    labels = manifest["counts"]["per_label"]
    assert labels["tuev_event:0"] == 1 and labels["tuev_event:5"] == 1
    assert labels["eegmmi_imagery:0"] == 8 and labels["eegmmi_imagery:1"] == 7
    assert labels["chbmit_seizure:1"] == 3 and labels["siena_seizure:1"] == 2
    records = [
        schema.decode_example(raw)
        for path in glob.glob(str(out / "site-*" / "*.tfrecord"))
        for raw in read_records(path)
    ]
    assert {r.corpus_split for r in records if r.task == b"tuev_event"} == {b"eval"}
    assert {(r.age, r.sex) for r in records if r.task == b"chbmit_seizure"} == {(11.0, b"F")}


def _write_then_fail(path: str) -> None:
    Path(path).write_text(str(os.getsid(0)))
    raise ValueError("a step of the job failed")


def test_a_multi_process_job_runs_in_a_session_of_its_own(tmp_path):
    from eegfm.pipelines.job.local_job import BeamJobFailed, run_in_session

    marker = tmp_path / "sid"
    with pytest.raises(BeamJobFailed, match="the Beam job stopped with exit status 1; its error is logged above"):
        run_in_session(functools.partial(_write_then_fail, str(marker)))
    assert int(marker.read_text()) != os.getsid(0)  # the child led a new session


_FAILING_LAUNCHER = """
import sys
from eegfm.core.logs import setup_logging
from eegfm.pipelines.job.local_job import BeamJobFailed, run_in_session

def job():
    raise ValueError("a step of the job failed")

setup_logging("INFO")
try:
    run_in_session(job)
except BeamJobFailed as err:
    print("launcher:", err, file=sys.stderr)
    sys.exit(1)
"""


def test_a_failed_multi_process_job_logs_its_error_once_and_the_launcher_says_so():
    done = subprocess.run([sys.executable, "-c", _FAILING_LAUNCHER], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "ERROR   eegfm.preprocess: the Beam job failed" in done.stderr
    assert done.stderr.count("ValueError: a step of the job failed") == 1  # logged, not also printed
    assert done.stderr.strip().splitlines()[-1] == (
        "launcher: the Beam job stopped with exit status 1; its error is logged above"
    )


# A launcher whose Beam job starts one worker and waits on it; the test interrupts the launcher.
_LAUNCHER = """
import functools, signal, subprocess, sys
from pathlib import Path
from eegfm.pipelines.job.local_job import run_in_session

# Ctrl-C as a shell gives a command: a process inherits an ignored or blocked SIGINT, and the
# test runner may have either.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

def job(path):
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    Path(path).write_text(str(worker.pid))
    worker.wait()

run_in_session(functools.partial(job, sys.argv[1]))
"""


def test_an_interrupted_multi_process_job_ends_with_its_workers(tmp_path):
    marker = tmp_path / "worker"
    # Its own process group, as a terminal's foreground job: Ctrl-C reaches the group.
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(marker)], start_new_session=True)
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()):
        assert launcher.poll() is None and time.monotonic() < deadline, "the job started no worker"
        time.sleep(0.02)
    os.killpg(launcher.pid, signal.SIGINT)
    assert launcher.wait(timeout=30) != 0  # stopped by the interrupt, not by the worker's end
    worker = int(marker.read_text())
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"  # a zombie has ended; its parent was killed first
    except FileNotFoundError:
        return False
