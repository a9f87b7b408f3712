"""Small labeled HMS-style data written directly as the pipeline's TFRecords (``contract.schema``),
and batches as the loader hands them out, for tests that need labeled windows in seconds rather
than a pipeline run: each window's votes favour one class, and its EEG carries that class's rhythm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from eegfm.contract.schema import WindowRecord, encode_example
from eegfm.contract.tfrecord import write_records

N_CLASSES = 6


def write_hms_windows(root: Path, n_subjects: int = 8, per_subject: int = 6, n_times: int = 512) -> Path:
    """``root/site-a/part-00000-of-00001.tfrecord``: ``n_subjects`` x ``per_subject`` windows of task
    hms6 (votes 3 for the window's class, 1 for the next), without a spectrogram; returns ``root``."""
    rng = np.random.default_rng(0)
    records = []
    for subject in range(n_subjects):
        for index in range(per_subject):
            label = (subject + index) % N_CLASSES
            votes = np.zeros(N_CLASSES, np.float32)
            votes[label], votes[(label + 1) % N_CLASSES] = 3, 1
            eeg = rng.normal(0, 20, (19, n_times)) + 30 * np.sin(2 * np.pi * (label + 1) * np.arange(n_times) / 256)
            records.append(
                WindowRecord(
                    eeg=eeg.astype(np.float32),
                    channel_mask=np.ones(19, np.int64),
                    site_id=b"site-a",
                    subject_id=f"subject-{subject}".encode(),
                    session_id=b"",
                    recording_id=f"recording-{subject}".encode(),
                    window_start_s=float(2 * index),
                    quality=np.zeros(3, np.float32),
                    artifact_score=0.0,
                    source_sha256=b"0" * 64,
                    config_hash=b"constructed",
                    label=label,
                    votes=votes,
                    task=b"hms6",
                    window_start_index=index * n_times,
                )
            )
    (root / "site-a").mkdir(parents=True, exist_ok=True)
    write_records(root / "site-a" / "part-00000-of-00001.tfrecord", [encode_example(r) for r in records])
    return root


def labeled_batch(batch: int, frames: int, seed: int) -> dict[str, torch.Tensor]:
    """A loader-style hms6 batch with a ``spectrogram`` (B, 400, frames) following the contract
    (log1p power; LL, RL, LP, RP x 100 bins), in which each class raises the power of its own band
    of bins, and 1 s of EEG carrying the class's rhythm ((label + 1) * 2 Hz) in noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, N_CLASSES, (batch,), generator=generator)
    spectrogram = torch.rand(batch, 400, frames, generator=generator)
    for row, label in enumerate(labels.tolist()):
        bins = torch.arange(15 * label, 15 * label + 15)
        spectrogram[row, bins] += 2.0
        spectrogram[row, 200 + bins] += 2.0
    votes = torch.nn.functional.one_hot(labels, N_CLASSES).float() * 3
    time = torch.arange(256) / 256
    rhythm = torch.sin(2 * torch.pi * 2 * (labels[:, None] + 1) * time)  # (B, 256)
    eeg = 20 * torch.randn(batch, 19, 256, generator=generator) + 40 * rhythm[:, None]
    return {
        "eeg": eeg,
        "channel_mask": torch.ones(batch, 19),
        "spectrogram": spectrogram,
        "votes": votes,
        "targets": votes / 3,
        "n_votes": votes.sum(-1),
        "label": labels,
    }
