"""eegfm-predict on a local file imports no Apache Beam (~1 s of its start): listing the input and
reading it go through the operating system; Beam is for gs:// and s3:// inputs. Nor does loading
and running an eegfm model import transformers' modeling_utils (1.5-2 s more)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.model.conftest import make_model

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


def _last_line(script: str, argument) -> str:
    """The last line ``script`` prints in a fresh interpreter given ``argument``; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(argument)],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_local_recording_is_listed_and_read_without_importing_beam(tmp_path):
    recording = tmp_path / "x.edf"
    recording.write_bytes(b"0" * 256)  # listing and the digest do not parse it
    assert _last_line(_LIST_AND_READ, recording) == "[]"


# What a prediction loads, in a fresh process: the predictor's module and the torch backend on a
# saved eegfm model, then one batch through it.
_LOAD_AND_SCORE = textwrap.dedent(
    """
    import sys
    import torch
    import eegfm.serving.predict_run  # the command's run, with the predictor
    from eegfm.inference.backends import make_backend
    from eegfm.inference.predictor import PredictConfig

    backend = make_backend(PredictConfig(), sys.argv[1], n_times=1280, patch_size=256)
    eeg = torch.randn(2, 19, 1280, generator=torch.Generator().manual_seed(0))
    logits, samples = backend.logits_and_samples({"eeg": 20.0 * eeg})
    assert logits.shape == (2, 6) and samples.shape[:2] == (2, 20), (logits.shape, samples.shape)
    heavy = ("transformers.modeling_utils", "torch._dynamo", "torch.distributed.tensor", "torch_geometric")
    print(type(backend.model).__name__, sorted(name for name in heavy if name in sys.modules))
    """
)


def test_a_saved_eegfm_model_scores_without_transformers_modeling_utils(tmp_path):
    """transformers' modeling_utils (what PreTrainedModel needs) brings torch._dynamo and
    torch.distributed: 1.5-2 s of eegfm-predict's start, which the inference load
    (``model.network``) does without."""
    make_model("tiny").save_pretrained(tmp_path / "model")
    assert _last_line(_LOAD_AND_SCORE, tmp_path / "model") == "EEGFMNetwork []"
