"""`--input` patterns -> the files they name, through Beam's FileSystems: local paths, globs (`**`
recurses), folders, `gs://` and `s3://`. One local file is looked up as Beam's local file system
looks it up (``os.path``: ``core.stores.exists``, ``match_path``), without importing Beam (~1 s).

Beam's local listing passes over, in silence, what it cannot look at: a dangling symbolic link, a
link loop, a file or folder it may not read. Those are listed here too, each with what is wrong
(``unreadable``), so that every entry the inputs name is accounted for in the manifest.

It also lists what is no file to read, and what reading would hang on or never finish: a FIFO, a
socket, a device (``/dev/zero``, ``/dev/urandom``) or a symbolic link to one. Each local entry's type
is looked up once, here, before anything opens it (``not_regular``): only regular files go on as
inputs; the others, and folders named like a recording file (``y.edf/``; an EGI ``.mff`` folder is
one), are passed over with why (``passed_over``). Object-store keys are regular objects.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Sequence

from eegfm.core.stores import STORE_ERRORS, exists, is_remote, match_below, match_path, storage_error
from eegfm.pipelines.datasets.adapters import log
from eegfm.pipelines.datasets.items import RECORDING_EXTENSIONS
from eegfm.pipelines.readers.regular_files import file_kind


def is_dir(path: str) -> bool:
    if is_remote(path):
        # An object store has no folders, only keys: a "folder" is a prefix with keys below it,
        # maybe only in deeper "sub-folders" (** crosses "/"; * would not).
        return not exists(path) and bool(match_below(path, "**", limit=1))
    return os.path.isdir(path)


def expand_inputs(patterns: list[str]) -> list[str]:
    """Every file the patterns name (a folder means all files below it), sorted, de-duplicated;
    with the entries that cannot be read and those that are no recording by their type (``listing``)."""
    sizes, unreadable, passed_over = listing(normalized(patterns))
    return sorted({*sizes, *unreadable, *passed_over})


def normalized(patterns: list[str]) -> list[str]:
    """Local paths spelled one way (``a//b``, ``a/./b``: ``a/b``): one file, one input; object-store paths as given."""
    return [p if is_remote(p) else os.path.normpath(p) for p in patterns]


def under_any(path: str, roots: Sequence[str]) -> bool:
    def norm(p: str) -> str:
        return p.rstrip("/") if is_remote(p) else os.path.abspath(p)

    path = norm(path)
    return any(path == root or path.startswith(root + "/") for root in map(norm, roots))


def root_of(pattern: str) -> str:
    """The folder a file or glob input starts in: a file's folder, a glob's folder before its
    first wildcard (``raw/**/*.edf`` and ``raw/site*/x.edf``: ``raw``, as for the folder ``raw/``)."""
    return os.path.dirname(re.split(r"[*?\[]", pattern, maxsplit=1)[0])


def _globstar_variants(pattern: str) -> list[str]:
    """``pattern`` and, for each ``/**/`` in it, the same with zero folders there: Beam's ``**`` needs
    a folder in ``raw/**/*.edf``, which should also match ``raw/x.edf`` (as bash's globstar does)."""
    parts = pattern.split("/**/")
    variants = [parts[0]]
    for part in parts[1:]:
        variants = [v + sep + part for v in variants for sep in ("/**/", "/")]
    return sorted(set(variants))


def _matches(pattern: str) -> tuple[list, dict[str, str], dict[str, str]]:
    """Beam ``FileMetadata`` of every file one pattern names, the entries it names that cannot
    be read, and the folders named like a recording below it, with why (local paths only)."""
    folder = is_dir(pattern)
    # A folder or file that is there is itself, whatever characters its name holds ("EEG [2019]").
    there = not folder and exists(pattern)
    globs = [] if folder or there else _globstar_variants(pattern)
    below = [pattern] if folder else []  # folders, listed by match_below
    wildcard = bool(globs) and re.search(r"[*?\[]", pattern) is not None
    links = (
        []
        if is_remote(pattern) or not (folder or wildcard)
        else linked_folders(pattern.rstrip("/") if folder else root_of(pattern) or ".")
    )
    if links and folder:  # Beam's local listing (os.walk) does not enter linked folders
        below += links
    elif links:
        log.warning(
            "--input %s: symbolic links to folders below %s are not followed by a glob (%s); give "
            "them as --input folders",
            pattern,
            root_of(pattern) or ".",
            ", ".join(links[:5]),
        )
    try:
        matched = _globbed(globs)
        matched += [m for top in below for m in match_below(top, "**")]
        matched += match_path(pattern) if there else []
    except STORE_ERRORS as err:  # an object store: credentials, endpoint, bucket, network
        raise OSError(f"--input {pattern}: cannot list it ({storage_error(err)})") from None
    if is_remote(pattern):
        return matched, {}, {}
    if there or (globs and os.path.lexists(pattern)):  # one file (or a link to nothing), given as it is
        problem = _problem(pattern)
        return matched, {pattern: problem} if problem else {}, {}
    walked = below if folder else [root_of(pattern) or "."] if wildcard else []
    variants = [re.compile(_translate(g)) for g in globs]
    named = (lambda path: any(v.match(path) for v in variants)) if wildcard else None
    problems, folders = unreadable(walked, {m.path for m in matched}, named)
    return matched, problems, folders


def _globbed(globs: list[str]) -> list:
    """Beam ``FileMetadata`` of the files the glob patterns match (none: Beam is not imported)."""
    if not globs:
        return []
    from apache_beam.io.filesystems import FileSystems  # apache_beam: ~1 s to import; only for a glob

    return [m for result in FileSystems.match(globs) for m in result.metadata_list]


def _translate(glob: str) -> str:
    """The regular expression Beam matches a glob pattern with."""
    from apache_beam.io.filesystem import FileSystem  # imported for a glob by _globbed already

    return FileSystem.translate_pattern(glob)


def _problem(path: str) -> str:
    """What keeps this user from reading the local entry ``path``, or '' (none, or it is gone)."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ENOENT:  # a link to nothing; else removed since it was listed
            return "dangling symbolic link: what it points to does not exist" if os.path.islink(path) else ""
        if err.errno == errno.ELOOP:
            return "symbolic link loop: it leads back to itself"
        if err.errno in (errno.EACCES, errno.EPERM):
            return "permission denied: this user may not look it up"
        return f"cannot look it up ({err.strerror or err})"
    return _unreadable_listed(path)


def unreadable(tops: list[str], listed: set[str], named=None) -> tuple[dict[str, str], dict[str, str]]:
    """``{path: problem}`` for the entries below the local folders ``tops`` that Beam's listing
    (``listed``) leaves out or that this user may not read, the files among them those ``named``
    accepts (all: None): a dangling or looping link, a file without permission, and any folder that
    cannot be listed (what it holds is unknown, so it may hold inputs); and ``{path: why}`` for the
    folders below them named like a recording file (``recording_named_folder``), which are none."""
    found: dict[str, str] = {}
    folders: dict[str, str] = {}

    def folder_error(err: OSError) -> None:
        if err.filename:
            found[err.filename] = (
                "permission denied: this user may not list this folder, so its recordings cannot be read"
                if err.errno in (errno.EACCES, errno.EPERM)
                else f"cannot list this folder ({err.strerror or err})"
            )

    for top in tops:
        for root, dirs, files in os.walk(top, onerror=folder_error):
            for name in dirs:
                path = os.path.join(root, name)
                if (named is None or named(path)) and (why := recording_named_folder(path)):
                    folders[path] = why
            for name in files:
                path = os.path.join(root, name)
                if named is not None and not named(path):
                    continue
                problem = _problem(path) if path not in listed else _unreadable_listed(path)
                if problem:
                    found[path] = problem
    return found, folders


def not_regular(path: str) -> str:
    """Why the local entry ``path`` is no recording by its type, or '' for a regular file (through
    symbolic links): "not a regular file (a FIFO)". Looked up before anything opens it, as opening
    a FIFO waits for a writer for ever and a device (``/dev/zero``) never ends. An entry that cannot
    be looked up is ``_problem``'s ('')."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return ""
    if stat.S_ISREG(mode):
        return ""
    kind = file_kind(mode)
    linked = "a symbolic link to " if os.path.islink(path) else ""
    return f"not a regular file ({linked}{kind}): never opened, not a recording"


def recording_named_folder(path: str) -> str:
    """Why the local folder ``path`` named like a recording file (``y.edf``) is none, or '': a folder
    of another name, or one that is a recording (EGI's ``x.mff``; its files are read through it)."""
    name = os.path.basename(path.rstrip("/")).lower()
    if name.endswith(".mff") or not name.endswith(tuple(e for e in RECORDING_EXTENSIONS if e != ".mff")):
        return ""
    return "a folder, not a recording file (named like one; any files in it are listed on their own)"


def _unreadable_listed(path: str) -> str:
    """Why this user may not read a file Beam listed (its size known: it can be looked up), or ''."""
    return "" if os.access(path, os.R_OK) else "permission denied: this user may not read it"


def listing(patterns: list[str]) -> tuple[dict[str, int], dict[str, str], dict[str, str]]:
    """The size of every readable regular file the patterns name, what is wrong with each entry they
    name that cannot be read (``unreadable``), and why each other entry they name is no recording by
    its type (``not_regular``, ``recording_named_folder``); FileNotFoundError for a pattern that names
    nothing."""
    sizes: dict[str, int] = {}
    problems: dict[str, str] = {}
    passed_over: dict[str, str] = {}
    for pattern in patterns:
        matched, unread, folders = _matches(pattern)
        if not matched and not unread and not folders:
            raise FileNotFoundError(f"--input {pattern}: matched no files")
        sizes.update((m.path, m.size_in_bytes) for m in matched)
        problems.update(unread)
        passed_over.update(folders)
    for path in problems.keys() & sizes.keys():  # listed, but not to be read: no adapter opens it
        del sizes[path]
    # The one file-type test, before any adapter or reader opens a file (a FIFO, /dev/zero).
    for path in [p for p in sizes if not is_remote(p)]:
        if why := not_regular(path):
            del sizes[path]
            passed_over[path] = why
    return sizes, problems, passed_over


def linked_folders(folder: str) -> list[str]:
    """Symbolic links to folders anywhere below the local ``folder``, through the links too; one into a
    tree already listed or above one (a cycle) is left out with a warning: its files would come twice."""
    if not os.path.isdir(folder):
        return []
    listed = [os.path.realpath(folder)]
    links, pending = [], [folder]
    while pending:
        for root, dirs, _ in os.walk(pending.pop(0)):
            for name in sorted(dirs):
                path = os.path.join(root, name)
                if not os.path.islink(path):
                    continue
                real = os.path.realpath(path)
                if any(real == t or real.startswith(t + os.sep) or t.startswith(real + os.sep) for t in listed):
                    log.warning("%s -> %s: a link into (or above) a folder already listed, not followed", path, real)
                    continue
                listed.append(real)
                links.append(path)
                pending.append(path)
    return links
