"""Distribution `eegfm`: EEG preprocessing (Beam), foundation model, training and evaluation.

Direct dependencies are pinned here; `requirements/lock.txt` pins the whole environment. The
core install is what a Dataflow worker needs to run the preprocessing pipeline (`--setup_file
./setup.py`), so torch and the rest of the modelling stack live in extras: a worker never pulls
multi-GB torch wheels it does not use.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

LOCK = HERE / "requirements" / "lock.txt"


def _locked_versions() -> dict[str, str]:
    versions = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            versions[name.strip().lower().replace("_", "-")] = version.strip()
    return versions


_VERSIONS = _locked_versions()


def pinned(*names: str) -> list[str]:
    """`name==version` for each direct dependency, the version taken from the lock."""
    reqs = []
    for spec in names:
        base = spec.split("[", 1)[0].lower().replace("_", "-")
        if base not in _VERSIONS:
            raise SystemExit(f"setup.py: {base} is not pinned in {LOCK}; run `make lock`")
        reqs.append(f"{spec}=={_VERSIONS[base]}")
    return reqs


CORE = pinned(
    "apache-beam[gcp,aws]",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "mne",
    "antio",  # MNE reads ANT Neuro eego .cnt files through it
    "curryreader",  # and Curry files through this one
    "defusedxml",  # and NeuroElectrics .nedf headers through this one
    "pyedflib",
    "cramjam",
    "google-crc32c",
    "protobuf",
    "pyyaml",
    "tqdm",
    "python-picard",
    "scikit-learn",
    "filelock",
    "threadpoolctl",
    # EEGLAB files saved as MATLAB v7.3 (HDF5: large data sets, or EEGLAB's own option) need it.
    "pymatreader",
    # MNE reads EGI's .mff recordings (folders) through it.
    "mffpy",
)
# captum: eegfm-predict --explain's integrated gradients (it brings matplotlib for the figures).
MODEL = pinned("torch", "torch-geometric", "transformers", "safetensors", "onnx", "onnxruntime", "onnxscript", "captum")
# braindecode: the benchmarks' supervised EEGNet baseline. 0.8.1, the last release that does not
# need torchaudio: PyPI's torchaudio wheels are CUDA builds that cannot load beside the CPU torch.
MODEL += pinned("braindecode")
# pyriemann: the benchmarks' tangent-space covariances (the tangent_space_lr baseline and eegfm's readout).
MODEL += pinned("pyriemann")
# psutil: the CPU time of a training rank and its loader workers, beside its neighbours' (core/neighbours.py).
MODEL += pinned("psutil")
# eegfm-serve: the HTTP API (FastAPI on uvicorn), its metrics and its /docs page's assets (no CDN);
# ijson parses a JSON recording as a stream: the body is never held as Python objects.
# edfio: a reviewer's marks as an EDF+ annotations-only file (/v1/marks/{id}/annotations.edf).
SERVE = pinned("fastapi", "uvicorn", "prometheus-client", "python-multipart", "swagger-ui-py", "ijson", "edfio")
TRAIN = pinned("wandb", "matplotlib")
TF = pinned("tensorflow-cpu")
# moto's S3 server and gcp-storage-emulator stand in for S3 and GCS in the object-store tests.
DEV = pinned(
    "pytest",
    "pytest-timeout",
    "pytest-xdist",  # make test: the suite's modules on every allowed core (tests/conftest.py)
    "ruff",
    "kubernetes-validate",
    "moto[s3]",
    "flask",
    "flask-cors",
    "gcp-storage-emulator",
    "hdf5storage",
    "schemathesis",  # property-based tests of eegfm-serve's OpenAPI description
    "websockets",  # the browser tests drive headless Chromium over the DevTools protocol
)  # hdf5storage writes the tests' MATLAB v7.3 EEGLAB file

EXTRAS = {
    "model": MODEL,
    "serve": MODEL + SERVE,
    "train": MODEL + SERVE + TRAIN,  # the cluster's one image serves too (infra/docker)
    "tf": TF,
    # Horovod must be built from source with a C++17 patch: scripts/install_horovod.sh does it.
    "horovod": pinned("cloudpickle", "psutil", "pyyaml", "packaging"),
    "dev": DEV + TF + SERVE,
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

# src/eegfm/<layer>/...: the import path is the file path (docs/design.md, "Layers").
PACKAGES = find_packages("src", include=["eegfm", "eegfm.*"])

CONSOLE_SCRIPTS = [
    "eegfm-simulate = eegfm.simulate.cli:main",  # a simulated multi-site corpus
    "eegfm-realism = eegfm.evaluation.realism:main",  # the simulated background against real corpora
    "eegfm-planted = eegfm.simulate.planted:main",  # simulated patterns planted in real recordings: a training corpus
    "eegfm-preprocess = eegfm.pipelines.job.preprocess:main",
    "eegfm-redact = eegfm.pipelines.privacy.redact:main",  # which file a --redact_paths token names
    # Training entry points need the `train` extra (torch); DDP users launch `torchrun -m ...`.
    "eegfm-pretrain = eegfm.training.pretrain:main",
    "eegfm-finetune = eegfm.training.finetune:main",
    "eegfm-loso = eegfm.evaluation.loso:main",  # leave-one-site-out: one fine-tuning fold per site
    "eegfm-robustness = eegfm.evaluation.robustness:main",  # a fine-tuned model under perturbed EEG
    "eegfm-predict = eegfm.serving.predict:main",  # a fine-tuned model's predictions for raw recordings
    "eegfm-serve = eegfm.serving.server:main",  # the same behind an HTTP API
    "eegfm-ensemble = eegfm.training.ensemble:main",  # fine-tuned models stacked into one
    "eegfm-curves = eegfm.training.curves:main",  # a run's training curves as one picture
    "eegfm-benchmark = eegfm.evaluation.comparison.cli:main",  # eegmat, a labelled folder, simulated
    "eegfm-report = eegfm.evaluation.report.cli:main",  # the cross-site report of every stage's outputs
    "eegfm-selective = eegfm.metrics.selective:main",  # risk-coverage of a run's uncertainty scores
    "eegfm-data-report = eegfm.pipelines.quality.site_report:main",  # a preprocessed folder's data quality by site
    "eegfm-quality-survey = eegfm.pipelines.quality.survey:main",  # what each quality rule flags per corpus
    "eegfm-quantize = eegfm.serving.quantize:main",  # an INT8 ONNX model, checked against float32
    "eegfm-models = eegfm.serving.models:main",  # versioned models in a store
    "eegfm-corpus-check = eegfm.evaluation.corpus_check:main",  # what a model says about whole real corpora
    "eegfm-planted-seizures = eegfm.evaluation.planted_seizures:main",  # seizures planted in real backgrounds
]

setup(
    name="eegfm",
    version="0.1.0",
    description="An open EEG foundation-model stack: Beam preprocessing, transformer+GNN encoder, "
    "distributed training, cross-site evaluation and export.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=PACKAGES,
    package_dir={"": "src"},
    package_data={
        "eegfm.training": ["configs/*.yaml"],
        "eegfm.pipelines": ["*.yaml"],
        "eegfm.inference": ["recommendation.yaml", "prediction.schema.json"],
        "eegfm.serving.api": ["static/*.html", "static/*.js", "static/*.css"],  # the page at / (no CDN)
    },
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    license="Apache-2.0",
)
