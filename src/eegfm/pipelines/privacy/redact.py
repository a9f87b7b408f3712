"""Keyed tokens for file and folder names and for channel labels, for exports named after patients
(the default; ``--keep_paths`` turns it off).

In the manifest, quarantine.jsonl and the logs, every folder and file name below the folder an
--input was given in is replaced by a keyed hash of that name: with ``--input /data/exports``,
``/data/exports/Doe~ John/EEG1.edf`` becomes ``/data/dir-5b0c.../dir-91e4.../file-2d7a....edf``.
Each name is hashed on its own (a path keeps its shape; a sidecar ``x.eeg`` of ``x.vhdr`` shares
its stem's token) and extensions stay. ``eegfm-redact`` maps tokens back for the key's holder.
A channel label that is no recognised electrode, reference or auxiliary signal (a clinic may type
the patient's name or record number into one) becomes ``chan-<hex>`` the same way.
``redact_events`` applies this to the per-recording path's outcomes and rejected windows.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from collections.abc import Iterable

from eegfm.contract.channels import auxiliary_kind, cap_label, clean_channel_name, derivation, standard_name
from eegfm.core.logs import RedactingFilter, setup_logging
from eegfm.core.stores import STORE_ERRORS
from eegfm.core.threads import fair_threads
from eegfm.pipelines.privacy.deid import DEFAULT_KEY_FILE, PseudonymKeyError, keyed_hex, load_key

TOKEN_HEX = 12
# The extensions of the files a run reads or finds beside them; any other dot is part of a name
# ('Smith.Jane_1970' is one name to tokenize, not 'Smith' and an extension '.Jane_1970').
_EXTENSIONS = (
    r"edf|bdf|fif|vhdr|vmrk|eeg|set|fdt|parquet|csv|tsv|json|txt|md|gz|mat|mff|fif-\d+"
    r"|gdf|cnt|evt|21e|pnt|log|11d|cmt|cn2|lay|dat|cdt|dpa|cef|ceo|dap|rs3|nxe|nedf|zip|tar|tgz|7z|bz2|xz"
    r"|pdf|png|jpg|jpeg|xml|html|npy|npz|h5|hdf5|tfrecord|key|yaml|yml|bin"
)
_SUFFIX = re.compile(r"(\.(?i:" + _EXTENSIONS + r"))$")
_WILDCARD = re.compile(r"[*?\[]")
# A stem is a file's name only before an extension of the files a run reads ('1.edf', not '1.5 s').
_FILE_EXT = r"(?=\.(?i:" + _EXTENSIONS + r")(?![A-Za-z0-9]))"
# What may sit right before or after a name in a message (a name never continues past these).
_BEFORE = r"(?<![A-Za-z0-9_.~-])"
_AFTER = r"(?![A-Za-z0-9_~-])"
# Labels that name a reference, ground or annotation channel, not a person (upper case).
_REFERENCE_LABELS = frozenset("REF GND GROUND CMS DRL COM COMMON AVG AVE AVERAGE CAR LE A1A2 M1M2".split()) | {
    "EDF ANNOTATIONS",
    "BDF ANNOTATIONS",
}
# Caps' position labels (EGI's E1, BioSemi's A1..H32, mgh's EEG 001, EasyCap's 1..128) say where, not who.
_CAP_STYLE = re.compile(r"^((E|EEG)?\d{1,3}|[A-H]\d{1,2})$", re.IGNORECASE)
# Five digits in a row are a record number or a date, whatever prefix a label has ('ECG 1960-01-01' too).
_IDENTIFIER_LIKE = re.compile(r"\d{5}|\d{2,4}[-/.]\d{1,2}[-/.]\d{1,4}")


def known_label(label: str) -> bool:
    """True for a channel label that names an electrode, a derivation of two, a reference or an
    auxiliary signal (``contract.channels``): one that can stay readable in outputs."""
    name = label.strip()
    if not name or len(name) > 32 or _IDENTIFIER_LIKE.search(name):
        return False
    return (
        standard_name(name) is not None
        or (auxiliary_kind(name) is not None and _plain_auxiliary(name))
        or derivation(name) is not None
        or clean_channel_name(name).upper() in _REFERENCE_LABELS
        or name.upper() in _REFERENCE_LABELS
        or bool(_CAP_STYLE.match(cap_label(name)))
    )


# The words of an auxiliary label ('EEG EKG1-REF', 'POL EMG', 'ECG LA-RA', 'SpO2'): what may follow
# its kind is another kind, an electrode, a reference, a number, or a side or lead of two letters.
_LABEL_WORDS = re.compile(r"[\s_:+/().-]+")
_LEAD = re.compile(r"^([A-Z]{1,2}\d{0,3}|\d+)$")


def _plain_auxiliary(label: str) -> bool:
    """Whether every word of an auxiliary label is one a channel has, not a person's name behind a
    known prefix ('ECG DOE JOHN')."""
    for word in filter(None, _LABEL_WORDS.split(label.upper())):
        if not (
            _LEAD.match(word)
            or word in _REFERENCE_LABELS
            or word in ("EEG", "POL")
            or auxiliary_kind(word) is not None
            or standard_name(word) is not None
        ):
            return False
    return True


def split_name(name: str) -> tuple[str, str]:
    """``(stem, extensions)``: ``x.fif.gz`` -> ``('x', '.fif.gz')``, ``x.fif-1.gz`` ->
    ``('x', '.fif-1.gz')``, ``README`` -> ``('README', '')``."""
    stem, ext = name, ""
    if stem.lower().endswith(".gz") and len(stem) > 3:
        stem, ext = stem[:-3], stem[-3:]
    found = _SUFFIX.search(stem)
    if found and found.start() > 0:
        stem, ext = stem[: found.start()], found.group(1) + ext
    return stem, ext


class PathRedactor:
    """Replaces file and folder names by keyed tokens; ``enabled=False`` leaves text as it is,
    so callers need no branch of their own."""

    def __init__(self, key: bytes, enabled: bool = True, keep: Iterable[str] = ()):
        self._key, self.enabled = key, enabled
        # The shown folders stay readable (see `shown_folders`), longest first.
        self.keep = tuple(sorted({k.rstrip("/") or "/" for k in keep if k}, key=len, reverse=True))
        self._names: dict[tuple[str, str], str] = {}

    def _digest(self, kind: str, name: str) -> str:
        token = self._names.get((kind, name))
        if token is None:
            token = self._names[(kind, name)] = f"{kind}-{keyed_hex(self._key, kind, name)[:TOKEN_HEX]}"
        return token

    def stem(self, stem: str) -> str:
        return self._digest("file", stem)

    def folder(self, name: str) -> str:
        return self._digest("dir", name)

    def label(self, label: str) -> str:
        """A channel label as it may be shown: itself where ``known_label``, else ``chan-<hex>``."""
        if not self.enabled or known_label(label):
            return label
        token = self._digest("chan", label)
        _LABELS_SEEN.setdefault(label, token)
        return token

    def labels(self, labels: Iterable[str]) -> tuple[str, ...]:
        return tuple(map(self.label, labels))

    def name(self, name: str) -> str:
        """A file name's token, its extensions kept: ``Doe.edf`` -> ``file-<hex>.edf``."""
        stem, ext = split_name(name)
        return self.stem(stem) + ext

    def split(self, path: str) -> tuple[str, str]:
        """``(kept, rest)``: the part of ``path`` in a kept folder (with its slash), and the rest."""
        for k in self.keep:
            if k == "/" and path.startswith("/"):
                return "/", path[1:]
            if path == k:
                return path, ""
            if path.startswith(k + "/"):
                return k + "/", path[len(k) + 1 :]
        return "", path

    def path(self, path: str) -> str:
        """``path`` with every folder and file name below a kept folder replaced; a scheme
        (``gs://``), the bucket, slashes and wildcards (a glob given as --input) stay."""
        if not self.enabled or not path:
            return path
        path, hash_, fragment = path.partition("#")  # train.csv#eeg_id=N: a row of a label file
        if hash_:
            return self.path(path) + hash_ + fragment
        kept, rest = self.split(path)
        return kept + self._names_of(rest, relative=True) if kept else self._names_of(path, relative=False)

    def _names_of(self, path: str, relative: bool) -> str:
        scheme, sep, rest = ("", "", path) if relative or "://" not in path else path.partition("://")
        parts = rest.split("/")
        last = len(parts) - 1
        out = []
        for i, part in enumerate(parts):
            if not part or part in (".", "..") or _WILDCARD.search(part) or (sep and i == 0):
                out.append(part)  # a bucket names a store, not a patient
            elif (i == last and split_name(part)[1]) or part.lower().endswith(".mff"):
                out.append(self.name(part))  # an EGI MFF folder is a recording, named as its files are
            else:
                out.append(self.folder(part))
        return (scheme + "://" if sep else "") + "/".join(out)

    def scrubber(self, paths: Iterable[str], labels: Iterable[str] = (), typed: Iterable[str] = ()) -> Scrubber:
        return Scrubber(self, paths, labels, typed)


def _whole(path: str) -> str:
    """A pattern of ``path`` where it stands as a path in a text, never inside a longer name or a word: with
    --input e, 'quarantined' keeps its 'e'. A path with a slash is one wherever it stands whole; a bare name
    (--input in, --input data) only next to a slash, a quote or ':' (as every reason starts) or after
    '--input ': elsewhere it is a word of the message ('removed 2 files in /out')."""
    before = r"(?<![\w.~-])" if re.match(r"[\w.~-]", path) else ""
    after = r"(?![\w~-])(?!\.\w)" if re.search(r"[\w~-]$", path) else ""
    name = re.escape(path)
    if "/" in path:
        return before + name + after
    return "|".join(
        (
            before + name + after + r"(?=[:/'\"])",
            r"(?<=[/'\"])" + name + after,
            r"(?<=--input )" + name + after,
        )
    )


# Every label a redactor of this process replaced: a log line is scrubbed by the launcher's filter, which
# never saw the recording's header (the DirectRunner's workers log through it), and must lose it too.
_LABELS_SEEN: dict[str, str] = {}


class Scrubber:
    """Replaces each of a set of paths in any text: in full, as its stem with an extension, or as a folder name next to
    a slash; other words stay, even where they spell a folder's name ("eeg"). Channel labels that are no electrode's
    (``labels``, and those any redactor of the process met) become their tokens wherever they stand as a word. A
    substring test picks the few names a text holds before a pattern is built: milliseconds per log line even with
    every input of a large run."""

    def __init__(
        self, redactor: PathRedactor, paths: Iterable[str], labels: Iterable[str] = (), typed: Iterable[str] = ()
    ):
        self.enabled = redactor.enabled
        self._full: dict[str, str] = {}
        self._stems: dict[str, str] = {}
        self._folders: dict[str, str] = {}
        self._entries: dict[str, str] = {}  # last names without an extension: a folder's, mostly
        self._labels: dict[str, str] = {}
        if not self.enabled:
            return
        for label in labels:
            token = redactor.label(label)
            if token != label and label.strip():
                self._labels[label.strip()] = token
        # An --input as typed shows whole in a message, never by its last name alone: that name is no entry
        # (with --input /x/data, "x.parquet: data: unreadable rows" keeps its field name).
        typed = set(typed)
        for path in paths:
            if not path or path in self._full:
                continue
            self._full[path] = redactor.path(path)
            kept, rest = redactor.split(path)
            parts = rest.partition("://")[2].split("/")[1:] if "://" in rest and not kept else rest.split("/")
            *dirs, name = parts
            if name and not _WILDCARD.search(name):
                stem, ext = split_name(name)
                self._stems[stem] = redactor.stem(stem)
                if not ext and path not in typed:  # no extension: `path` names it as it names a folder
                    self._entries[name] = redactor.folder(name)
            for d in dirs:
                if d and d not in (".", "..") and not _WILDCARD.search(d):
                    self._folders[d] = redactor.folder(d)

    def __call__(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        fulls = [f for f in self._full if f in text]
        if fulls:  # one pass: a name is never looked for inside another's token
            pattern = "|".join(_whole(full) for full in sorted(fulls, key=len, reverse=True))
            text = re.sub(pattern, lambda m: self._full[m.group(0)], text)
        stems = [s for s in self._stems if s in text]
        if stems:
            pattern = _BEFORE + "(" + "|".join(map(re.escape, sorted(stems, key=len, reverse=True))) + ")" + _FILE_EXT
            text = re.sub(pattern, lambda m: self._stems[m.group(1)], text)
        folders = [d for d in self._folders if d in text]
        if folders:
            names = "|".join(map(re.escape, sorted(folders, key=len, reverse=True)))
            pattern = (
                _BEFORE + "(" + names + ")" + _AFTER + "(?=/)|(?<=/)(" + names + ")" + _AFTER + r"(?!\.[A-Za-z0-9])"
            )
            text = re.sub(pattern, lambda m: self._folders[m.group(1) or m.group(2)], text)
        return self._scrub_labels(self._scrub_entries(text))

    def _scrub_entries(self, text: str) -> str:
        """An entry without an extension (a folder that could not be listed) where a message names it: before
        ':' ("Smith^Jane: permission denied", as every reason starts), next to a slash, or quoted; elsewhere
        the same word stays, as a folder's does."""
        found = [e for e in self._entries if e in text]
        if not found:
            return text
        names = "|".join(map(re.escape, sorted(found, key=len, reverse=True)))
        before = _BEFORE + "(" + names + ")" + _AFTER + r"(?=[:/'\"])"
        after = r"(?<=[/'\"])(" + names + ")" + _AFTER + r"(?!\.[A-Za-z0-9])"
        pattern = before + "|" + after
        return re.sub(pattern, lambda m: self._entries[m.group(1) or m.group(2)], text)

    def _scrub_labels(self, text: str) -> str:
        tokens = {**_LABELS_SEEN, **self._labels}
        found = [label for label in tokens if label and label in text]
        if not found:
            return text
        names = "|".join(map(re.escape, sorted(found, key=len, reverse=True)))
        return re.sub(r"(?<![A-Za-z0-9])(" + names + r")(?![A-Za-z0-9])", lambda m: tokens[m.group(1)], text)


def kept_folders(inputs: Iterable[str]) -> list[str]:
    """The folders the operator named, which stay readable: each --input's parent folder (for a
    glob, the folder before its first wildcard); names below them are redacted."""
    kept = []
    for given in inputs:
        scheme, sep, rest = given.partition("://") if "://" in given else ("", "", given)
        parts = rest.rstrip("/").split("/")
        wild = next((i for i, part in enumerate(parts) if _WILDCARD.search(part)), None)
        parts = parts[:wild] if wild is not None else parts[:-1]
        if sep and not parts:
            continue  # a whole bucket: only its name stays, as everywhere
        folder = "/".join(parts) or ("/" if rest.startswith("/") else "")
        if folder:
            kept.append(scheme + sep + folder)
    return kept


def shown_folders(inputs: Iterable[str], shown: Iterable[str] | None = None) -> list[str]:
    """The folders whose paths stay readable: ``shown`` where given (``--shown_folders``), else
    :func:`kept_folders` of the inputs."""
    return kept_folders(inputs) if shown is None else [folder for folder in shown if folder]


def related_paths(item) -> list[str]:
    """The files a recording's reasons may name: itself and the sidecars that apply to it."""
    return [item.path, item.channels_tsv, *item.eeg_json, item.electrodes_tsv, item.coordsystem_json]


class RunRedaction:
    """Redaction (unless ``--keep_paths``) over one launcher run: log records held until the inputs are listed, then
    scrubbed of their names; before the key is read, a throwaway key hides them."""

    def __init__(self, enabled: bool, paths: Iterable[str], shown: Iterable[str] | None = None):
        self.enabled, self._typed = enabled, tuple(paths)  # the --input paths as the operator typed them
        self.redactor = PathRedactor(secrets.token_bytes(32), enabled, shown_folders(self._typed, shown))
        self.scrub = self.redactor.scrubber(self._typed, typed=self._typed)
        self._filter = RedactingFilter().install() if enabled else None

    def keyed(self, key: bytes, paths: Iterable[str], keep: Iterable[str] = ()) -> None:
        """The run's key and inputs are known: scrub with them, and let held records out."""
        self.redactor = PathRedactor(key, self.enabled, keep)
        self.scrub = self.redactor.scrubber(paths, typed=self._typed)
        self.release()

    def release(self) -> None:
        if self._filter is not None:
            self._filter.release(self.scrub)

    def close(self) -> None:
        if self._filter is not None:
            self.release()
            self._filter.remove()
            self._filter = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-redact",
        description="Print the redacted path of every input file, next to the real one, so the holder of "
        "the pseudonym key can find the file a redacted manifest or quarantine line names. The "
        "output holds the real paths: keep it on this machine.",
    )
    parser.add_argument(
        "--input",
        action="extend",
        nargs="+",
        required=True,
        metavar="PATH",
        help="the files, globs or folders given to eegfm-preprocess (or eegfm-predict), exactly as given there "
        "(the folders they name stay readable, so another spelling gives other tokens; eegfm-predict's "
        "file-<hex> tokens name files alone, whatever the spelling)",
    )
    parser.add_argument(
        "--pseudonym_key_file",
        default=DEFAULT_KEY_FILE,
        help=f"the key file of the eegfm-preprocess or eegfm-predict run (local, gs:// or s3://); default "
        f"{DEFAULT_KEY_FILE}, both commands' default",
    )
    parser.add_argument(
        "--shown_folders",
        nargs="+",
        default=None,
        metavar="DIR",
        help="the --shown_folders of the eegfm-preprocess run, if it had any (they decide the tokens too)",
    )
    parser.add_argument(
        "--find",
        default=None,
        metavar="TOKEN",
        help="print only the paths whose redacted form contains TOKEN (a file-... or dir-... "
        "token, or a whole redacted path; eegfm-predict's recordings.json names each recording by one)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("WARNING")
    from eegfm.pipelines.datasets import discover  # the adapters, readers and Beam's file systems: not for --help

    try:
        redactor = PathRedactor(load_key(args.pseudonym_key_file), keep=shown_folders(args.input, args.shown_folders))
        items, ignored, _ = discover(args.input)
    except (PseudonymKeyError, ValueError, *STORE_ERRORS) as err:
        parser.error(str(err))
    rows = sorted({(redactor.path(p), p) for p in [*(i.path for i in items), *(g.path for g in ignored)]})
    shown = [(r, p) for r, p in rows if args.find is None or args.find in r]
    for redacted, path in shown:
        print(f"{redacted}\t{path}")
    if args.find is not None and not shown:
        print(
            f"--find {args.find}: no input's redacted path contains it (another key, or other inputs?)", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
