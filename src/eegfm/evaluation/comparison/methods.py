"""The fine-tuning methods of a benchmark (``--methods``): each a network row, run by ``runs``
(whose docstring says what each is). Only the standard library and ``core.config``, so the
registry of rows and the command's parser read them without importing torch (tests/test_commands.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from eegfm.core.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    description: str
    pretrained: bool
    mode: str = "full"
    subject_fraction: float = 1.0
    architecture: str = "eegfm"
    # the method's own fine-tuning settings (``Config.with_settings``: a field, or section.field), applied last
    settings: tuple[tuple[str, Any], ...] = ()
    shared: bool = False  # starts from the shared encoder (``benchmark.shared``), not this run's pretraining
    adapted: bool = False  # ... pretrained further on this run's pretraining windows (``comparison.pretrainings``)
    members: tuple[str, ...] = ()  # an ensemble's member methods (fine-tuned first, same fold and seed)
    reference: bool = False  # a row eegfm is compared with: it runs the seeds of ``reference_seeds``

    @property
    def pretraining(self) -> str | None:
        """The name of the benchmark run's pretraining this method starts from (its architecture,
        or the shared encoder's further pretraining); None: from scratch, or the shared encoder as is."""
        if not self.pretrained or (self.shared and not self.adapted):
            return None
        return f"{self.architecture}-adapted" if self.adapted else self.architecture


def check_shared_encoder(names: Iterable[str], shared_encoder: str | None) -> None:
    """ConfigError where a method of ``names`` starts from the shared encoder and none is given."""
    shared = [name for name in dict.fromkeys(names) if METHODS[name].shared]
    if shared and not shared_encoder:
        raise ConfigError(
            f"--shared_encoder: {', '.join(shared)} start(s) from the shared encoder; give its model folder "
            "(`... benchmark pretrain`'s OUT/pretrain/model)"
        )


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("eegfm", "eegfm: pretrained, fine-tuned", True),
        Method("eegfm_shared", "eegfm: the shared pretrained encoder, fine-tuned", True, shared=True),
        Method(
            "eegfm_adapted",
            "eegfm: the shared encoder pretrained further on this benchmark's windows, fine-tuned",
            True,
            shared=True,
            adapted=True,
        ),
        Method("scratch", "same architecture from scratch", False, reference=True),
        Method("linear_probe", "linear probe of the pretrained encoder", True, mode="linear"),
        Method("eegfm_10pct", "eegfm, 10 % of training subjects' labels", True, subject_fraction=0.1, reference=True),
        Method(
            "scratch_10pct",
            "from scratch, 10 % of training subjects' labels",
            False,
            subject_fraction=0.1,
            reference=True,
        ),
        Method(
            "eegfm_fusion",
            "eegfm with the spectrogram fused",
            True,
            settings=(("model_overrides", {"modalities": ["spectrogram"]}),),
        ),
        Method(
            "spectrogram_cnn",
            "2-D CNN on the spectrograms, from scratch",
            False,
            architecture="spectrogram_cnn",
            settings=(("model_overrides", {"spec_augment": 0.3}),),  # chosen on the corpus of seed 1
        ),
        Method(
            "cbramod",
            "CBraMod-style criss-cross transformer, from scratch",
            False,
            architecture="cbramod",
            reference=True,
        ),
        Method("labram", "LaBraM-style patch transformer, from scratch", False, architecture="labram", reference=True),
        Method(
            "cbramod_pretrained",
            "CBraMod-style, pretrained by masked patch reconstruction",
            True,
            architecture="cbramod",
            reference=True,
        ),
        Method(
            "labram_pretrained",
            "LaBraM-style, pretrained by masked spectrum prediction",
            True,
            architecture="labram",
            reference=True,
        ),
        Method(
            "cbramod_probe",
            "linear probe of the pretrained CBraMod-style encoder",
            True,
            "linear",
            architecture="cbramod",
            reference=True,
        ),
        Method(
            "labram_probe",
            "linear probe of the pretrained LaBraM-style encoder",
            True,
            "linear",
            architecture="labram",
            reference=True,
        ),
        Method(
            "ensemble",
            "eegfm + spectrogram CNN, stacked on validation",
            False,
            architecture="ensemble",
            members=("eegfm", "spectrogram_cnn"),
        ),
    )
}
