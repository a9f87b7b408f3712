"""The realism table of the simulated patterns: statistics measured on rendered episodes of each
class (:mod:`~simulate.pattern_measures`), each against a reference range with its source.

Episodes are drawn as a corpus draws them (:func:`~simulate.patterns.draw_episode`, strengths
0.3-1, seizures lasting what a 60-240 s segment leaves after its 5-15 s lead) and rendered on an
awake adult background of the simulator's own (scalp potentials at 200 Hz, no sleep, no delta
slowing, no reference: what a statistic says is the pattern's, not a reference's). Each
statistic is summarized by its median over the episodes and their range, and judged against a
reference range whose kind says where it comes from:

- **definitional**: the ACNS 2021 Standardized Critical Care EEG Terminology (Hirsch et al.,
  J Clin Neurophysiol 2021;38:1-29) or the IFCN glossary (Kane et al., Clin Neurophysiol Pract
  2017;2:170-185) make it part of what the pattern is;
- **empirical**: published measurements of real seizures;
- **operational**: a threshold chosen here, with the reason given (no published number).

Statistics without a published range (amplitudes: ACNS defines categories, not a range of a
class; spread times) are reported with ``inside`` n/a.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.simulate.background import N_NOISE, BackgroundGenerator
from eegfm.simulate.pattern_measures import discharge_statistics, rhythmic_delta_statistics, seizure_statistics
from eegfm.simulate.patterns import Episode, draw_episode, render_episodes
from eegfm.simulate.plan import plan_background, seizure_lead_s
from eegfm.simulate.rng import rng_for
from eegfm.simulate.sites import SiteProfile

SFREQ = 200.0
PATTERN_CLASSES = ("Seizure", "LPD", "GPD", "LRDA", "GRDA")
BASELINE_S = 20.0  # background before every episode
AFTER_S = 5.0  # and after it
# An awake adult: the site's default amplitudes, no sleep and no polymorphic delta slowing.
_BACKGROUND_SITE = SiteProfile(name="pattern_realism", sleep_probability=0.0, slowing_probability=0.0)


@dataclasses.dataclass(frozen=True)
class Rendered:
    """One episode on its background: ``x`` (19, n) scalp µV at :data:`SFREQ` from time 0."""

    episode: Episode
    x: np.ndarray

    @property
    def end_s(self) -> float:
        return self.x.shape[1] / SFREQ


def render_episode(cls: str, index: int, seed: int = 0) -> Rendered:
    """Episode ``index`` of ``cls``: drawn, and rendered on its own background."""
    rng = rng_for(seed, "pattern_realism", cls, index)
    if cls == "Seizure":
        segment = (0, int(rng.integers(60, 241)))
        duration = segment[1] - seizure_lead_s(rng, segment)
    else:
        duration = float(rng.integers(60, 121))
    start, end = BASELINE_S, BASELINE_S + duration
    episode = draw_episode(rng, cls, start, end, float(rng.uniform(0.3, 1.0)))
    total = int(round((end + AFTER_S) * SFREQ))
    t = np.arange(total) / SFREQ
    background = BackgroundGenerator(plan_background(rng, _BACKGROUND_SITE, int(math.ceil(end + AFTER_S))), SFREQ)
    noise = rng.standard_normal((total, N_NOISE)).T
    x = background.step(noise, t)
    render_episodes([episode], t, out=x)
    return Rendered(episode, x)


def measure(rendered: Rendered) -> dict:
    """The statistics of one rendered episode (what an annotator marks: class, start, end, focus)."""
    episode, x = rendered.episode, rendered.x
    if episode.cls == "Seizure":
        focus = CANONICAL_CHANNELS.index(episode.focus)
        return seizure_statistics(x, SFREQ, episode.start_s, rendered.end_s, focus)
    inner = (episode.start_s + 3.0, episode.end_s - 3.0)  # past the on/off ramps
    if episode.cls in ("LPD", "GPD"):
        return discharge_statistics(x, SFREQ, *inner)
    return rhythmic_delta_statistics(x, SFREQ, *inner)


# ---------------------------------------------------------------------------------------------
# Reference ranges and their sources
# ---------------------------------------------------------------------------------------------

# Short names in the table; the full references below it (SOURCES).
ACNS21, ACNS12, IFCN = "ACNS 2021", "ACNS 2012", "IFCN glossary 2017"
JAN, EBERSOLE, JIRSA = "Jan et al.", "Ebersole & Pacia 1996", "Jirsa et al. 2014"
NAPOLITANO, ILAE = "Napolitano & Orriols 2008", "ILAE EpilepsyDiagnosis"
SOURCES = {
    ACNS21: "Hirsch LJ et al. American Clinical Neurophysiology Society's Standardized Critical Care EEG "
    "Terminology: 2021 version. J Clin Neurophysiol 2021;38:1-29",
    ACNS12: "Hirsch LJ et al. ACNS Standardized Critical Care EEG Terminology: 2012 version. J Clin "
    "Neurophysiol 2013;30:1-27 (background symmetry: mild <50 %, marked >50 % amplitude asymmetry)",
    IFCN: "Kane N et al. A revised glossary of terms most commonly used by clinical electroencephalographers. "
    "Clin Neurophysiol Pract 2017;2:170-185",
    JAN: "Jan MM, Sadler M, Rahey SR. Electroencephalographic features of temporal lobe epilepsy. Can J Neurol "
    "Sci (review): ictal rhythms irregular 2-5 Hz or 5-10 Hz sinusoidal; post-ictal delta lateralized in 60 % "
    "of patients",
    EBERSOLE: "Ebersole JS, Pacia SV. Localization of temporal lobe foci by ictal EEG patterns. Epilepsia "
    "1996;37:386-399 (regular 5-9 Hz inferotemporal rhythm)",
    JIRSA: "Jirsa VK et al. On the nature of seizure dynamics. Brain 2014;137:2210-2230 (inter-spike "
    "intervals lengthen toward seizure offset)",
    NAPOLITANO: "Napolitano CE, Orriols MA. Two types of remote propagation in mesial temporal epilepsy: "
    "analysis with scalp ictal EEG. J Clin Neurophysiol 2008;25:69-76 (remote propagation in 18 of 56 "
    "seizures, early <10 s or late >10 s)",
    ILAE: "ILAE EpilepsyDiagnosis.org, temporal lobe seizures, EEG: bitemporal spread in up to 20 % of "
    "lateral temporal seizures; focal post-ictal slowing after about 70 % of mesial temporal seizures",
}
KINDS = ("definitional", "empirical", "operational", "none")


@dataclasses.dataclass(frozen=True)
class Reference:
    """A statistic's reference range [``low``, ``high``] (None: unbounded; both None: no range),
    what kind of range it is (:data:`KINDS`), where it comes from, and how it is measured."""

    measured: str
    low: float | None
    high: float | None
    kind: str
    source: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}; got {self.kind!r}")

    @property
    def has_range(self) -> bool:
        return self.low is not None or self.high is not None

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def overlaps(self, low: float, high: float) -> bool:
        return (self.low is None or high >= self.low) and (self.high is None or low <= self.high)


_AMPLITUDE = Reference(
    "peak-to-trough, µV: seizure, 95 % span of the focus's 2-14 Hz rhythm in its last 8 s; PDs, the average "
    "discharge at the field maximum; RDA, median cycle there",
    None,
    None,
    "none",
    f"{ACNS21} defines categories (very low <20, low 20-49, medium 50-199, high >=200 µV), not a range of a "
    "class; the median's category is shown",
)
_LATERALIZED = Reference(
    "amplitude (average discharge; power at the RDA frequency) of the larger hemisphere over the smaller",
    2.0,
    None,
    "operational",
    f"lateralized = unilateral or bilateral asymmetric ({ACNS21}); read here as the 'marked asymmetry' of "
    f"background symmetry (>50 % amplitude, {ACNS12}), a ratio >= 2",
)
_GENERALIZED = Reference(
    "amplitude (average discharge; power at the RDA frequency) of the larger hemisphere over the smaller",
    1.0,
    2.0,
    "operational",
    f"generalized = bilateral, synchronous and symmetric ({ACNS21}); at most a 'mild asymmetry' (<50 %, {ACNS12})",
)
SEIZURE_STATS: dict[str, Reference] = {
    "onset_freq_hz": Reference(
        "focus rhythm 4-8 s after onset, peak of the rise above the pre-ictal spectrum",
        2.0,
        10.0,
        "empirical",
        f"scalp ictal rhythms irregular 2-5 Hz or 5-10 Hz ({JAN}); regular 5-9 Hz temporal rhythm ({EBERSOLE})",
    ),
    "end_freq_hz": Reference(
        "focus rhythm in the last 8 s (to 1 s before the measured end)",
        2.5,
        10.0,
        "definitional",
        f"{ACNS21} seizure criterion: discharges averaging >2.5 Hz for >=10 s (lower bound); upper: {JAN}",
    ),
    "freq_ratio": Reference(
        "end over onset frequency",
        0.0,
        1.0,
        "empirical",
        f"the rhythm slows toward the end ({JIRSA}: inter-spike intervals lengthen before offset)",
    ),
    "freq_drop_hz": Reference(
        "onset minus end frequency",
        1.0,
        None,
        "definitional",
        f"{ACNS21} evolution in frequency: >=2 consecutive changes of >=0.5 Hz in the same direction",
    ),
    "amplitude_growth": Reference(
        "focus 2-14 Hz RMS, last 8 s over 4-8 s after onset",
        1.0,
        None,
        "operational",
        f"no published range: a rhythm that builds up (evolution in {ACNS21} counts frequency, morphology "
        "and location, not amplitude)",
    ),
    "amplitude_uv": _AMPLITUDE,
    "spread_neighbour_s": Reference(
        "from focus onset until half the adjacent electrodes carry >=50 % of the focus's amplitude",
        None,
        None,
        "none",
        "no published range",
    ),
    "spread_distant_s": Reference(
        "... until half the other hemisphere's electrodes do (seizures that get there)",
        None,
        None,
        "none",
        f"remote spread both before and after 10 s from onset ({NAPOLITANO}): no bound",
    ),
    "electrodes_recruited": Reference(
        "electrodes besides the focus that ever carry >=50 % of its amplitude",
        2.0,
        18.0,
        "definitional",
        f"{ACNS21} evolution in location: spreading into >=2 standard 10-20 electrode locations",
    ),
    "postictal_freq_hz": Reference(
        "focus, 2-10 s after the end, peak of the rise above pre-ictal (seizures followed by delta)",
        0.0,
        4.0,
        "definitional",
        f"delta band <4 Hz ({IFCN})",
    ),
}
# Shares over the sample: the fraction of seizures with the property, judged by its 95 % interval.
SEIZURE_SHARES: dict[str, Reference] = {
    "share_bilateral_spread": Reference(
        "seizures whose field reaches half the other hemisphere's electrodes (>=50 % of the focus)",
        0.20,
        0.32,
        "empirical",
        f"bitemporal spread in up to 20 % of lateral temporal seizures ({ILAE}); remote spread in 18 of 56 "
        f"(32 %) mesial temporal seizures ({NAPOLITANO})",
    ),
    "share_postictal_delta": Reference(
        "seizures followed by delta: 0.5-3.5 Hz power 2-10 s after the end >= 2x before the onset",
        0.60,
        0.70,
        "empirical",
        f"focal post-ictal slowing after ~70 % of mesial temporal seizures ({ILAE}); lateralized post-ictal "
        f"delta in 60 % of patients ({JAN})",
    ),
}
PD_STATS: dict[str, Reference] = {
    "rate_hz": Reference(
        "1 / median interval between detected discharges",
        0.0,
        2.5,
        "definitional",
        f"{ACNS21}: discharges averaging >2.5 Hz for >=10 s are an electrographic seizure",
    ),
    "period_variation": Reference(
        "median |change of period| / period over consecutive cycles",
        0.0,
        0.5,
        "definitional",
        f"{ACNS21} PDs: period varying <50 % from one cycle to the next in most cycle pairs",
    ),
    "main_phase_ms": Reference(
        "main phase of the average discharge at its base (10 % of its peak)",
        20.0,
        200.0,
        "definitional",
        f"spike 20-<70 ms, sharp wave 70-200 ms ({IFCN})",
    ),
    "discharge_duration_ms": Reference(
        "average discharge, first to last sample above 10 % of its peak",
        0.0,
        500.0,
        "definitional",
        f"{ACNS21} 'discharge': any waveform of <=0.5 s (longer ones only with <=3 phases)",
    ),
    "amplitude_uv": _AMPLITUDE,
}
RDA_STATS: dict[str, Reference] = {
    "freq_hz": Reference(
        "field maximum, peak of the rise above the 10 s before",
        0.0,
        4.0,
        "definitional",
        f"{ACNS21} RDA: rhythmic activity <=4 Hz",
    ),
    "amplitude_uv": _AMPLITUDE,
}


def references(cls: str) -> dict[str, Reference]:
    """Every statistic of ``cls`` (per-episode ones, then the sample's shares) with its reference."""
    if cls == "Seizure":
        return {**SEIZURE_STATS, **SEIZURE_SHARES}
    base = PD_STATS if cls in ("LPD", "GPD") else RDA_STATS
    return {**base, "lateralization": _LATERALIZED if cls[0] == "L" else _GENERALIZED}
