"""Class labels of a folder or ``.zip`` of images: from class folders or a ``dataset.json``.

With ``data.labels=folders`` the first folder level names each image's class (as
torchvision's ``ImageFolder``); with ``data.labels=json`` a ``dataset.json`` beside the
images gives them (stylegan2-ada's ``dataset_tool`` convention)::

    {"labels": [["cat/0001.png", 0], ["dog/0001.png", 1], ...], "class_names": ["cat", "dog"]}

with paths relative to ``data.path`` (``/`` separators) and the optional ``class_names``
(without it the classes are named ``"0"`` .. ``str(max label)``).

The functions here are pure: :class:`~progan_lightning.data.files.FolderSource` lists the
files and reads ``dataset.json``; they check it all and raise one ``ValueError`` per problem.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from progan_lightning.data.sources import listing

LABELS = ("none", "folders", "json")
LABELS_FILE = "dataset.json"  # At the root of data.path (or of the .zip), for data.labels=json.
LABELS_FORMAT = (
    'write it as {"labels": [["relative/path.png", class_index], ...]} with paths relative '
    'to data.path and "/" separators, and optionally "class_names": ["name", ...]'
)


def folder_labels(
    files: Sequence[str], folders: Collection[str], name: Callable[[int], str]
) -> tuple[list[str], np.ndarray]:
    """Classes from the first folder level: sorted folder names, and each file's index.

    Args:
        files: The image files, POSIX paths relative to ``data.path``.
        folders: The (not hidden) folder names directly under ``data.path``.
        name: Where file ``i`` lives, for messages.

    Returns:
        ``(class_names, labels)``: the sorted folder names and int64 [N] class indices.

    Raises:
        ValueError: an image file lies directly in ``data.path``, not in a class folder.
    """
    loose = [name(i) for i, file in enumerate(files) if "/" not in file]
    if loose:
        raise ValueError(
            f"data.labels=folders: {len(loose)} image file(s) directly in data.path, not "
            f"in a class folder: {listing(loose)}; move each "
            "into the folder of its class (data.path/<class>/...), or set data.labels=none"
        )
    class_names = sorted(folders)
    index = {folder: i for i, folder in enumerate(class_names)}
    labels = [index[file.split("/")[0]] for file in files]
    return class_names, np.asarray(labels, dtype=np.int64)


def json_labels(
    text: bytes, files: Sequence[str], where: str, path: Path, name: Callable[[int], str]
) -> tuple[list[str], np.ndarray]:
    """Classes from the text of ``dataset.json``: its (or numbered) class names, each file's.

    Args:
        text: The contents of ``dataset.json``.
        files: The image files, POSIX paths relative to ``data.path``.
        where: Where ``dataset.json`` is, for messages.
        path: ``data.path``, for messages.
        name: Where file ``i`` lives, for messages.

    Returns:
        ``(class_names, labels)``: the class names and int64 [N] class indices.

    Raises:
        ValueError: invalid JSON, the wrong structure, a file without a label, a path that
            names no file, or a label that is not a class index.
    """
    try:
        data = json.loads(text)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{where} is not valid JSON ({error}); {LABELS_FORMAT}") from error
    entries, class_names = _parse_labels_json(data, where)

    missing = [name(i) for i, file in enumerate(files) if file not in entries]
    if missing:
        raise ValueError(
            f"{len(missing)} image file(s) missing from {where}: "
            f"{listing(missing)}; add an entry [path, class_index] for each, or remove "
            "the files"
        )
    known = set(files)
    absent = [file for file in entries if file not in known]
    if absent:
        raise ValueError(
            f"{len(absent)} path(s) in {where} name no image file under "
            f"data.path={path!s}: {listing(absent)}; fix the paths "
            '(relative to data.path, with "/" separators) or remove the entries'
        )
    limit = len(class_names) if class_names is not None else None
    bad = [
        f"{file}: {value!r}"
        for file, value in entries.items()
        if isinstance(value, bool)
        or not isinstance(value, int)
        or value < 0
        or (limit is not None and value >= limit)
    ]
    if bad:
        valid = f"integers in [0, {limit})" if limit is not None else "integers >= 0"
        raise ValueError(
            f"{len(bad)} label(s) of {where} are not class indices "
            f"({valid}): {listing(bad)}; fix them"
            + ("" if limit is None else ", or add the missing names to its class_names")
        )
    labels = np.asarray([entries[file] for file in files], dtype=np.int64)
    if class_names is None:
        class_names = [str(i) for i in range(int(labels.max()) + 1)]
    return class_names, labels


def check_every_class_used(
    labels: np.ndarray, class_names: Sequence[str], setting: str, where: str
) -> None:
    """Raise one error naming the classes that no image file has.

    Args:
        labels: int64 [N] class index of each file.
        class_names: The classes.
        setting: ``data.labels``: ``folders`` or ``json``.
        where: The class folders of ``data.path`` or ``dataset.json``, for the message.
    """
    counts = np.bincount(labels, minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts, strict=True) if not count]
    if empty:
        if setting == "folders":
            fix = "add images to those folders or remove them"
        else:
            fix = "label images with those classes, or drop them (class_names, numbering)"
        raise ValueError(
            f"data.labels={setting}: {len(empty)} of the {len(class_names)} "
            f"classes of {where} have no image file: {listing(empty)}; {fix}"
        )


def _parse_labels_json(data: Any, where: str) -> tuple[dict[str, Any], list[str] | None]:
    """Check the structure of a parsed ``dataset.json``.

    Returns:
        ``(entries, class_names)``: each path's label (not yet checked) and the optional
        class names (None when absent).

    Raises:
        ValueError: naming ``where``, what is wrong and the expected format.
    """

    def wrong(problem: str) -> ValueError:
        return ValueError(f"{where} has the wrong structure: {problem}; {LABELS_FORMAT}")

    if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
        raise wrong('it needs a "labels" list')
    pairs = data["labels"]
    bad = [
        f"#{i}: {json.dumps(pair)}"
        for i, pair in enumerate(pairs)
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str))
    ]
    if bad:
        raise wrong(f"{len(bad)} label(s) not a [path, class_index] pair: {listing(bad)}")
    # "./a.png", "sub/../a.png" and "a.png" name one file.
    pairs = [[posixpath.normpath(name), label] for name, label in pairs]
    entries = dict(pairs)
    if len(entries) != len(pairs):
        twice = sorted(name for name, count in Counter(p[0] for p in pairs).items() if count > 1)
        raise wrong(f"{len(twice)} path(s) listed more than once: {listing(twice)}")
    class_names = data.get("class_names")
    if class_names is not None and not (
        isinstance(class_names, list)
        and class_names
        and all(isinstance(name, str) for name in class_names)
        and len(set(class_names)) == len(class_names)
    ):
        raise wrong(f'"class_names" must be a list of distinct strings, got {class_names!r}')
    return entries, class_names
