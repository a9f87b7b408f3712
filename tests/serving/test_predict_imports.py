"""eegfm-predict on a local file imports no Apache Beam (~1 s of its start): listing the input and
reading it go through the operating system; Beam is for gs:// and s3:// inputs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# A fresh process: the test session has imported Beam long since.
_LIST_AND_READ = textwrap.dedent(
    """
    import sys
    import eegfm.serving.predict_run  # the command's run, with the predictor
    from eegfm.inference.predictor import list_inputs
    from eegfm.pipelines.readers.local_copy import localized

    items, ignored = list_inputs([sys.argv[1]])
    assert [item.path for item in items] == [sys.argv[1]] and not ignored, (items, ignored)
    with localized(items[0].path) as (local, sha):
        assert local == sys.argv[1] and len(sha) == 64
    print(sorted(name for name in sys.modules if name.split(".")[0] == "apache_beam"))
    """
)


def test_a_local_recording_is_listed_and_read_without_importing_beam(tmp_path):
    recording = tmp_path / "x.edf"
    recording.write_bytes(b"0" * 256)  # listing and the digest do not parse it
    done = subprocess.run(
        [sys.executable, "-c", _LIST_AND_READ, str(recording)],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
