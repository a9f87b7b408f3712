"""Recording sites: how each hospital's EEG differs, as validated configs.

Leave-one-site-out evaluation is only honest if sites differ the way real hospitals do: a
:class:`SiteProfile` holds channel naming conventions, sampling rate, mains, gain and units,
reference, montage (referential or bipolar), missing and auxiliary channels, artifact rates, class
prevalence and EDF vs EDF+. Four archetypes form the default set; larger corpora add seeded
perturbations of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS, CANONICAL_TO_TEN_TEN, LEFT_CHANNELS, RIGHT_CHANNELS
from eegfm.core.config import Config, ConfigError, check_int, check_option, check_range
from eegfm.core.tasks import HMS_CLASSES
from eegfm.simulate.rng import rng_for

CLASSES: tuple[str, ...] = HMS_CLASSES
CHANNEL_STYLES = ("tuh", "physionet", "nihon_kohden", "plain")
CHANNEL_ORDERS = ("canonical", "paired")
AUX_KINDS = ("ecg", "eog", "emg", "photic")
REFERENCES = ("common", "average")
# How the EEG is written (simulate.montages): each electrode against the reference, or bipolar.
MONTAGES = ("referential", "double_banana", "chbmit23")
UNITS = {"uV": 1.0, "mV": 1e-3}  # physical units per microvolt
LINE_FREQUENCIES = (50.0, 60.0)
# Sampling rates of clinical and research amplifiers; for these the streaming resampler to the
# 200 Hz HMS rendering has short polyphase filters.
ALLOWED_SFREQS = (128, 160, 200, 250, 256, 400, 500, 512, 1000, 1024)


@dataclasses.dataclass
class SiteProfile(Config):
    """How one hospital records EEG. Amplitudes are in microvolts, rates in events per minute."""

    name: str = "site"
    archetype: str = "custom"
    channel_style: str = "plain"
    ten_ten_names: bool = False
    upper_case: bool = False
    channel_order: str = "canonical"
    sfreq: int = 256
    line_freq: float = 50.0
    line_noise_uv: float = 3.0
    gain: float = 1.0
    physical_dimension: str = "uV"
    physical_max: float = 3276.7
    digital_max: int = 32767
    reference: str = "common"
    montage: str = "referential"
    missing_channels: tuple[str, ...] = ()
    aux_channels: tuple[str, ...] = ("ecg",)
    edf_plus: bool = True
    prefiltering: str = ""
    transducer: str = ""
    equipment: str = "X"
    background_uv: float = 9.5
    alpha_uv: float = 13.0
    blink_rate_per_min: float = 8.0
    muscle_rate_per_min: float = 1.5
    pop_rate_per_min: float = 0.5
    drift_uv: float = 15.0
    sleep_probability: float = 0.3
    # Log-sd of people's scalp amplitude (a hospital's mix of ages and builds), and the share of its
    # recordings with polymorphic delta slowing (plan.plan_slowing).
    amplitude_spread: float = 0.5
    slowing_probability: float = 0.3
    class_prevalence: dict[str, float] = dataclasses.field(default_factory=lambda: {c: 1.0 for c in CLASSES})
    strength_range: tuple[float, float] = (0.3, 1.0)

    def validate(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ConfigError(f"name: expected letters, digits and underscores (it names a folder); got {self.name!r}")
        check_option("channel_style", self.channel_style, CHANNEL_STYLES)
        check_option("channel_order", self.channel_order, CHANNEL_ORDERS)
        check_option("sfreq", self.sfreq, ALLOWED_SFREQS)
        self.sfreq = int(self.sfreq)  # YAML may say 256.0; sample counts must be integers
        check_option("line_freq", self.line_freq, LINE_FREQUENCIES)
        check_option("physical_dimension", self.physical_dimension, tuple(UNITS))
        check_option("reference", self.reference, REFERENCES)
        check_option("montage", self.montage, MONTAGES)
        check_range("line_noise_uv", self.line_noise_uv, 0, 200)
        check_range("gain", self.gain, 0.1, 10)
        check_range("physical_max", self.physical_max, 0, None, low_inclusive=False)
        check_range("digital_max", self.digital_max, 255, 32767)
        check_range("background_uv", self.background_uv, 1, 200)
        check_range("alpha_uv", self.alpha_uv, 0, 200)
        check_range("blink_rate_per_min", self.blink_rate_per_min, 0, 60)
        check_range("muscle_rate_per_min", self.muscle_rate_per_min, 0, 30)
        check_range("pop_rate_per_min", self.pop_rate_per_min, 0, 30)
        check_range("drift_uv", self.drift_uv, 0, 500)
        check_range("sleep_probability", self.sleep_probability, 0, 1)
        check_range("amplitude_spread", self.amplitude_spread, 0, 1.5)
        check_range("slowing_probability", self.slowing_probability, 0, 1)
        for field in ("prefiltering", "transducer", "equipment", "archetype"):
            value = getattr(self, field)
            if not isinstance(value, str) or len(value) > 80 or not value.isascii():
                raise ConfigError(
                    f"{field}: expected ASCII text of at most 80 characters (it goes into EDF headers); got {value!r}"
                )
        self._validate_channels()
        self._validate_prevalence()
        low, high = self.strength_range
        check_range("strength_range[0]", low, 0, 1)
        check_range("strength_range[1]", high, low, 1)

    def _validate_channels(self) -> None:
        if unknown := [c for c in self.missing_channels if c not in CANONICAL_CHANNELS]:
            raise ConfigError(
                f"missing_channels: expected canonical names ({', '.join(CANONICAL_CHANNELS)}); got {unknown}"
            )
        if len(set(self.missing_channels)) > 4:
            raise ConfigError(
                f"missing_channels: at most 4 (later stages must be able to interpolate); "
                f"got {len(set(self.missing_channels))}"
            )
        for kind in self.aux_channels:
            check_option("aux_channels[]", kind, AUX_KINDS)
        if self.line_freq >= 0.45 * self.sfreq:  # the anti-aliasing filter would remove it
            raise ConfigError(
                f"line_freq: must be below 0.45 * sfreq = {0.45 * self.sfreq:g} Hz (below the "
                f"Nyquist frequency, inside the anti-aliasing band); got {self.line_freq}"
            )

    def _validate_prevalence(self) -> None:
        if not isinstance(self.class_prevalence, Mapping):
            raise ConfigError(f"class_prevalence: expected a mapping class -> weight; got {self.class_prevalence!r}")
        if unknown := sorted(set(self.class_prevalence) - set(CLASSES)):
            raise ConfigError(f"class_prevalence: expected keys among {', '.join(CLASSES)}; got {unknown}")
        for cls, weight in self.class_prevalence.items():
            check_range(f"class_prevalence[{cls}]", weight, 0, None)
        if sum(self.class_prevalence.values()) <= 0:
            raise ConfigError("class_prevalence: weights must not all be 0")

    def prevalence(self) -> np.ndarray:
        """Class probabilities in :data:`CLASSES` order (missing keys weigh 0)."""
        weights = np.array([float(self.class_prevalence.get(c, 0.0)) for c in CLASSES])
        return weights / weights.sum()

    def recorded_channels(self) -> tuple[str, ...]:
        """Canonical names of the EEG channels this site records, in the site's file order."""
        order = CANONICAL_CHANNELS if self.channel_order == "canonical" else _PAIRED_ORDER
        return tuple(c for c in order if c not in self.missing_channels)

    def eeg_label(self, canonical: str) -> str:
        return eeg_label(canonical, self.channel_style, ten_ten=self.ten_ten_names, upper=self.upper_case)

    def aux_label(self, kind: str) -> str:
        return aux_label(kind, self.channel_style, upper=self.upper_case)

    @property
    def units_per_uv(self) -> float:
        return UNITS[self.physical_dimension]


# Clinical montage listing order: left/right pairs, then midline (as TUH and many systems store).
_PAIRED_ORDER = tuple([c for pair in zip(LEFT_CHANNELS, RIGHT_CHANNELS) for c in pair] + ["Fz", "Cz", "Pz"])


def eeg_label(canonical: str, style: str, *, ten_ten: bool = False, upper: bool = False) -> str:
    """A canonical channel's label in a vendor style: 'T3' -> 'EEG T7-REF', 'T7..', 'EEG T7-Ref'."""
    check_option("style", style, CHANNEL_STYLES)
    name = CANONICAL_TO_TEN_TEN.get(canonical, canonical) if ten_ten else canonical
    if style == "tuh":  # Temple University Hospital exports: upper-case, '-REF' suffix
        return f"EEG {name.upper()}-REF"
    if upper:
        name = name.upper()
    if style == "physionet":  # BCI2000/PhysioNet: padded with dots to 4 characters
        return name.ljust(4, ".")
    if style == "nihon_kohden":
        return f"EEG {name}-Ref"
    return name


_AUX_NAMES = {
    "tuh": {"ecg": "EEG EKG1-REF", "eog": "EEG LOC-REF", "emg": "EMG-REF", "photic": "PHOTIC-REF"},
    "physionet": {"ecg": "ECG.", "eog": "EOG.", "emg": "EMG.", "photic": "Pho."},
    "nihon_kohden": {"ecg": "ECG ECG1", "eog": "POL LOC", "emg": "POL EMG", "photic": "POL Photic"},
    "plain": {"ecg": "ECG", "eog": "EOG", "emg": "EMG", "photic": "Photic"},
}


def aux_label(kind: str, style: str, *, upper: bool = False) -> str:
    """An auxiliary channel's label in a vendor style ('ecg' -> 'EEG EKG1-REF' at TUH-like sites)."""
    check_option("kind", kind, AUX_KINDS)
    label = _AUX_NAMES[check_option("style", style, CHANNEL_STYLES)][kind]
    return label.upper() if upper else label


# The built-in hospital archetypes as SiteProfile fields (the others keep their defaults);
# class_prevalence holds the weights in CLASSES order (seizure, lpd, gpd, lrda, grda, other).
_ARCHETYPES: tuple[dict, ...] = (
    dict(  # epilepsy monitoring unit, TUH-style export, US mains
        name="emu",
        archetype="epilepsy monitoring unit (TUH-style labels)",
        channel_style="tuh",
        channel_order="paired",
        sfreq=250,
        line_freq=60.0,
        line_noise_uv=4.0,
        physical_max=4999.9,
        aux_channels=("ecg", "photic"),
        edf_plus=False,
        prefiltering="HP:0.5Hz LP:100Hz",
        equipment="XLTEK_EEG32U",
        blink_rate_per_min=10.0,
        muscle_rate_per_min=2.0,
        drift_uv=20.0,
        sleep_probability=0.4,
        class_prevalence=(0.35, 0.15, 0.05, 0.15, 0.05, 0.25),
    ),
    dict(  # general ICU, Nihon Kohden export, European mains, two channels unplaced
        name="icu",
        archetype="general ICU (Nihon Kohden labels)",
        channel_style="nihon_kohden",
        sfreq=500,
        line_noise_uv=8.0,
        gain=1.15,
        physical_max=3200.0,
        missing_channels=("T5", "T6"),
        aux_channels=("ecg", "eog", "emg"),
        prefiltering="HP:0.53Hz LP:120Hz",
        transducer="AgAgCl electrode",
        equipment="NKC-EEG-1200A",
        blink_rate_per_min=4.0,
        muscle_rate_per_min=3.0,
        pop_rate_per_min=1.5,
        drift_uv=35.0,
        sleep_probability=0.5,
        class_prevalence=(0.06, 0.14, 0.12, 0.12, 0.28, 0.28),
    ),
    dict(  # research-grade recordings, PhysioNet/BCI2000 labels, average reference
        name="research",
        archetype="research EEG lab (PhysioNet-style labels)",
        channel_style="physionet",
        ten_ten_names=True,
        line_freq=60.0,
        line_noise_uv=1.5,
        gain=0.9,
        physical_max=8092.0,
        digital_max=8092,
        reference="average",
        aux_channels=("eog",),
        prefiltering="HP:0Hz LP:0Hz N:0Hz",
        equipment="BCI2000",
        blink_rate_per_min=14.0,
        muscle_rate_per_min=1.0,
        pop_rate_per_min=0.2,
        drift_uv=8.0,
        sleep_probability=0.15,
        class_prevalence=(0.12, 0.22, 0.18, 0.18, 0.12, 0.18),
    ),
    dict(  # community hospital: plain upper-case 10-10 names, millivolts, no Fz/Pz
        name="community",
        archetype="community hospital (plain labels, millivolts)",
        ten_ten_names=True,
        upper_case=True,
        sfreq=200,
        line_noise_uv=12.0,
        gain=1.3,
        physical_dimension="mV",
        physical_max=1.5,
        missing_channels=("Fz", "Pz"),
        aux_channels=("ecg", "emg", "photic"),
        edf_plus=False,
        equipment="Natus_NeuroWorks",
        muscle_rate_per_min=2.5,
        pop_rate_per_min=1.0,
        drift_uv=25.0,
        class_prevalence=(0.08, 0.12, 0.08, 0.14, 0.18, 0.40),
    ),
)


def archetypes() -> tuple[SiteProfile, ...]:
    """The four built-in hospital archetypes, as new profiles on every call."""
    return tuple(
        SiteProfile(**{**fields, "class_prevalence": dict(zip(CLASSES, fields["class_prevalence"]))})
        for fields in _ARCHETYPES
    )


BIPOLAR_SHARE = 0.25  # of perturbed sites, those writing chbmit23
_EXTRA_SFREQS = (512, 160, 250, 500, 256, 200)
_EXTRA_MISSING = ((), ("Fz", "Pz"), ("T5", "T6"), ("Fp1", "Fp2"), ("O1",), ("Cz",))


def perturbed(site: SiteProfile, index: int, seed: int, generation: int = 2) -> SiteProfile:
    """A new site derived from an archetype: same conventions, numbers redrawn from the seed."""
    rng = rng_for(seed, "site", index)
    prevalence = rng.dirichlet(site.prevalence() * 20.0 + 0.5)
    return site.replace(
        name=f"{site.name}{generation}",
        sfreq=int(rng.choice(_EXTRA_SFREQS)),
        line_freq=float(rng.choice(LINE_FREQUENCIES)),
        line_noise_uv=round(float(site.line_noise_uv * rng.uniform(0.5, 2.0)), 2),
        gain=round(float(site.gain * rng.uniform(0.8, 1.25)), 3),
        missing_channels=tuple(_EXTRA_MISSING[int(rng.integers(len(_EXTRA_MISSING)))]),
        reference=str(rng.choice(REFERENCES)),
        blink_rate_per_min=round(float(site.blink_rate_per_min * rng.uniform(0.5, 2.0)), 2),
        muscle_rate_per_min=round(float(site.muscle_rate_per_min * rng.uniform(0.5, 2.0)), 2),
        pop_rate_per_min=round(float(site.pop_rate_per_min * rng.uniform(0.5, 2.0)), 2),
        class_prevalence={c: round(float(p), 4) for c, p in zip(CLASSES, prevalence)},
        # Drawn last, so the fields above are what they were before sites had montages. Some
        # hospitals export CHB-MIT's bipolar montage; the double banana alone is never drawn (its
        # chains share no electrode, so no recording of it could be harmonized).
        montage="chbmit23" if rng.random() < BIPOLAR_SHARE else site.montage,
    )


def default_sites(n_sites: int, seed: int = 0, base: tuple[SiteProfile, ...] | None = None) -> list[SiteProfile]:
    """``n_sites`` profiles: the archetypes first, then seeded perturbations of them in turn."""
    check_int("n_sites", n_sites, 1)
    base = tuple(base) if base else archetypes()
    names = [s.name for s in base]
    if len(set(names)) != len(names):
        raise ConfigError(f"site names must be unique; got {names}")
    extra = [perturbed(base[i % len(base)], i, seed, i // len(base) + 1) for i in range(len(base), n_sites)]
    return [*base[:n_sites], *extra]
