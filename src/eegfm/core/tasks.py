"""The label vocabulary: each task's classes, named once for the pipeline, the model and training.

A record's ``task`` (``hms6``, ``tusz_seizure`` ...) names the label space its windows use; a
fine-tuning ``--task`` (``hms6``, ``tusz`` ...) trains on one of them (``FINETUNE_TASKS``).
"""

from __future__ import annotations

HMS_CLASSES: tuple[str, ...] = ("Seizure", "LPD", "GPD", "LRDA", "GRDA", "Other")
HMS_VOTE_COLUMNS = ("seizure_vote", "lpd_vote", "gpd_vote", "lrda_vote", "grda_vote", "other_vote")
SLEEP_STAGES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")

EEGMAT_LABELS = ("rest", "task")
TUAB_LABELS = ("normal", "abnormal")
TUEP_LABELS = ("no_epilepsy", "epilepsy")
SEIZURE_LABELS = ("background", "seizure")  # TUSZ's, CHB-MIT's and Siena's windows
# TUAR's five artifact kinds, then the pairs its annotators marked together.
_TUAR_KINDS = ("eyem", "chew", "shiv", "elec", "musc")
_TUAR_PAIRS = ("eyem_musc", "musc_elec", "eyem_elec", "eyem_chew", "chew_musc", "chew_elec", "eyem_shiv", "shiv_elec")
TUAR_LABELS = _TUAR_KINDS + _TUAR_PAIRS
TUEV_LABELS = ("spsw", "gped", "pled", "eyem", "artf", "bckg")
EEGMMI_LABELS = ("left_fist", "right_fist", "both_fists", "both_feet")

# A record's task -> its classes (the manifest lists them).
TASK_CLASSES = {
    "hms6": HMS_CLASSES,
    "eegmat_rest_task": EEGMAT_LABELS,
    "eegmmi_movement": EEGMMI_LABELS,
    "eegmmi_imagery": EEGMMI_LABELS,
    "tuab_abnormal": TUAB_LABELS,
    "tuep_epilepsy": TUEP_LABELS,
    "tusz_seizure": SEIZURE_LABELS,
    "tuev_event": TUEV_LABELS,
    "tuar_artifact": TUAR_LABELS,
    "chbmit_seizure": SEIZURE_LABELS,
    "siena_seizure": SEIZURE_LABELS,
}
# A record task -> the class of real recordings of people without the task's findings (preprocess
# --background): the simulator's windows cannot teach that healthy rhythms (eyes-closed alpha ...)
# are none of its patterns; real background, labeled so, can.
BACKGROUND_CLASSES = {"hms6": "Other"}
# A fine-tuning task -> the record task whose labels it trains on.
FINETUNE_TASKS = {
    "hms6": "hms6",
    "eegmat": "eegmat_rest_task",
    "tuab": "tuab_abnormal",
    "tuep": "tuep_epilepsy",
    "tusz": "tusz_seizure",
    "chbmit": "chbmit_seizure",
    "siena": "siena_seizure",
    "tuev": "tuev_event",
    "tuar": "tuar_artifact",
    "eegmmi": "eegmmi_imagery",
}
