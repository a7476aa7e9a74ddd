"""Resume by folder: ``progan-train ckpt_path=last hydra.run.dir=RUN [key=value ...]`` (or
``resume=RUN [key=value ...]``) composes the run's recorded overrides
(``RUN/.hydra/overrides.yaml``, see :mod:`progan_lightning.run_record`) first, then the new
ones; a new override of a recorded key replaces it. A multirun, ``progan-train -m
ckpt_path=last hydra.sweep.dir=SWEEP`` (or ``-m resume=SWEEP``), takes the sweep's overrides
(its sweep lists included) from the ``multirun.yaml`` that Hydra's sweeper keeps in the sweep
dir, so every job runs again in its own folder and resumes there. ``progan-evaluate
source=RUN`` (a run's folder, export or checkpoint) takes the run's data overrides the same
way (:func:`with_run_data`).

Hydra composes the config from the command line before the task runs, so the command line is
completed here, before Hydra parses it. Completing it twice gives the same line (every
recorded key is then on it already): the ranks of a multi-process run, which re-run the
completed command, compose exactly what rank 0 composed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from progan_lightning.run_record import recorded_cwd, recorded_overrides, run_of

RESUME_KEY = "resume"
SWEEP_RECORD = "multirun.yaml"


def sweep_cwd(sweep_dir: str | Path) -> Path | None:
    """The folder a sweep was started in (``hydra.runtime.cwd`` of its ``multirun.yaml``), or
    None when the file does not say."""
    try:
        record = yaml.safe_load((Path(sweep_dir).expanduser() / SWEEP_RECORD).read_text())
        cwd = record["hydra"]["runtime"]["cwd"]
    except (OSError, yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError):
        return None
    return Path(cwd) if isinstance(cwd, str) and cwd else None


def sweep_overrides(sweep_dir: str | Path) -> list[str] | None:
    """The overrides a sweep was started with (``hydra.overrides.task`` of the
    ``multirun.yaml`` that Hydra's sweeper writes into ``sweep_dir``), or None without one.

    Raises:
        ValueError: The file holds no list of overrides.
    """
    path = Path(sweep_dir).expanduser() / SWEEP_RECORD
    if not path.is_file():
        return None
    try:
        overrides = yaml.safe_load(path.read_text())["hydra"]["overrides"]["task"]
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError):
        overrides = None
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ValueError(
            f"{path} holds no list of overrides (hydra.overrides.task); give the sweep's "
            "overrides on the command line, or restore the file from a copy"
        )
    return overrides


def check_sweep_runs(sweep_dir: str | Path) -> None:
    """Refuse to resume a sweep folder that holds runs but no :data:`SWEEP_RECORD` (a
    sweeper such as Optuna samples its trials and keeps no list of overrides): each job
    would compose the default config, its sampled values lost.

    Raises:
        ValueError: Naming the runs and the resume of each by its folder.
    """
    folder = Path(sweep_dir).expanduser()
    if not folder.is_dir():
        return
    runs = sorted(p for p in folder.iterdir() if p.is_dir() and recorded_overrides(p) is not None)
    if runs:
        shown = ", ".join(p.name for p in runs[:5]) + (" ..." if len(runs) > 5 else "")
        raise ValueError(
            f"hydra.sweep.dir={sweep_dir} holds runs ({shown}) but keeps no {SWEEP_RECORD}, "
            "the list of a sweep's overrides that Hydra's default sweeper writes (Optuna "
            "samples its trials and keeps none), so its jobs would lose their settings: resume "
            f"each run by its folder, without -m: resume={runs[0]}"
        )


def override_key(override: str) -> str:
    """The key (or config group) an override sets: ``data`` for ``data=folder`` and
    ``+data=folder``, ``a.b`` for ``a.b=1`` and ``~a.b``."""
    parsed = OverridesParser.create().parse_override(override)
    return (
        parsed.key_or_group
        if parsed.package is None
        else f"{parsed.key_or_group}@{parsed.package}"
    )


def is_path_key(key: str) -> bool:
    """Whether a setting names a file or folder: ``init_from``, and the keys whose last part
    is ``path``, ``dirpath`` or ends in ``_path`` or ``_dir`` (``data.path``,
    ``paths.cache_dir``, ``callbacks.model_checkpoint.export_path``)."""
    last = key.rsplit(".", 1)[-1]
    return key == "init_from" or last in ("path", "dirpath") or last.endswith(("_path", "_dir"))


_PLAIN = re.compile(r"[\w./+:@%-]+")  # a value Hydra reads unquoted


def anchored(overrides: list[str], cwd: Path | None) -> list[str]:
    """``overrides`` recorded by a run started in ``cwd``, their relative paths (the values
    of :func:`is_path_key` settings) made absolute against it, so that a resume or an
    evaluation from another folder reads the same files. Absolute paths, ``~`` and ``$VAR``
    paths, interpolations and other settings stay as they were typed."""
    if cwd is None:
        return overrides
    parser = OverridesParser.create()
    out = []
    for override in overrides:
        try:
            parsed = parser.parse_override(override)
        except HydraException:  # Hydra reports it when it parses the line
            out.append(override)
            continue
        value = None if parsed.is_delete() else parsed.value()
        if (
            parsed.package is not None
            or not is_path_key(parsed.key_or_group)
            or not isinstance(value, str)
            or not value
            or value.startswith(("/", "~", "$"))
            or "${" in value
        ):
            out.append(override)
            continue
        path = str(cwd / value)
        quoted = path if _PLAIN.fullmatch(path) else "'" + path.replace("'", "\\'") + "'"
        out.append(f"{override.split('=', 1)[0]}={quoted}")
    return out


def _value(overrides: list[str], key: str) -> str | None:
    parser = OverridesParser.create()
    found = None
    for override in overrides:
        parsed = parser.parse_override(override)
        if parsed.key_or_group == key and not parsed.is_delete():
            value = parsed.value()
            found = None if value is None else str(value)
    return found


def with_recorded_overrides(overrides: list[str], multirun: bool = False) -> list[str]:
    """``overrides`` completed for a resume by folder: ``resume=RUN`` spelt out as
    ``ckpt_path=last hydra.run.dir=RUN`` (``hydra.sweep.dir`` in a multirun; without
    ``ckpt_path=last`` when they give a ``ckpt_path``, another checkpoint); when they set
    ``ckpt_path`` and the folder (a path, not an interpolation) and that folder holds a
    record, its recorded overrides come first, less those whose key the new ones set.
    Anything else is returned as it is (Hydra reports an override it cannot parse).

    Raises:
        ValueError: The folder's record is not a list of overrides.
    """
    folder_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        expanded: list[str] = []
        for override in overrides:
            if override_key(override) == RESUME_KEY:
                folder = _value([override], RESUME_KEY)
                given = any(override_key(o) == "ckpt_path" for o in overrides)
                expanded += [*([] if given else ["ckpt_path=last"]), f"{folder_key}={folder}"]
            else:
                expanded.append(override)
        folder = _value(expanded, folder_key)
        if not _value(expanded, "ckpt_path") or not folder or "${" in folder:
            return expanded
        if multirun:
            recorded = anchored(sweep_overrides(folder) or [], sweep_cwd(folder))
            if not (Path(folder).expanduser() / SWEEP_RECORD).is_file():
                check_sweep_runs(folder)
        else:
            recorded = anchored(recorded_overrides(folder) or [], recorded_cwd(folder))
        given = {override_key(o) for o in expanded}
        kept = [o for o in recorded if override_key(o) not in given]
    except HydraException:
        return overrides
    return [*kept, *expanded]


def _chooses_data(key: str) -> bool:
    """Whether an override's key chooses the data (``experiment``, ``data``, ``data.*``)."""
    return key in ("experiment", "data") or key.startswith("data.")


def with_run_data(overrides: list[str], multirun: bool = False) -> list[str]:
    """``progan-evaluate``'s overrides completed when ``source`` is a training run (its
    folder, export or checkpoint: :func:`~progan_lightning.run_record.run_of`) and they
    choose no data: the run's
    recorded overrides that chose its data come first, so that its generator is scored on
    the data it was trained on. Anything else is returned as it is.

    Raises:
        ValueError: The run's record is not a list of overrides.
    """
    try:
        source = _value(overrides, "source")
        if not source or source == "reals" or "${" in source:
            return overrides
        if any(_chooses_data(override_key(o)) for o in overrides):
            return overrides
        run = run_of(source)
        if run is None:
            return overrides
        recorded = anchored(recorded_overrides(run) or [], recorded_cwd(run))
        return [*(o for o in recorded if _chooses_data(override_key(o))), *overrides]
    except HydraException:
        return overrides


def complete_argv(
    argv: list[str], complete: Callable[[list[str], bool], list[str]] = with_recorded_overrides
) -> list[str]:
    """A command line (without the program) with its overrides completed by ``complete``
    (:func:`with_recorded_overrides`: a training resume; :func:`with_run_data`: an
    evaluation of a run): its flags first, then the overrides."""
    args, unknown = get_args_parser().parse_known_args(argv)
    if not args.overrides or unknown:
        return argv
    flags = list(argv)
    for override in args.overrides:
        flags.remove(override)
    return [*flags, *complete(args.overrides, args.multirun)]
