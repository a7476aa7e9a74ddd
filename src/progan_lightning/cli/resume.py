"""Resume by folder: ``progan-train ckpt_path=last hydra.run.dir=RUN [key=value ...]`` (or
``resume=RUN [key=value ...]``) composes the run's recorded overrides
(``RUN/.hydra/overrides.yaml``, see :mod:`progan_lightning.run_record`) first, then the new
ones; a new override of a recorded key replaces it.

Hydra composes the config from the command line before the task runs, so the command line is
completed here, before Hydra parses it. Completing it twice gives the same line (every
recorded key is then on it already): the ranks of a multi-process run, which re-run the
completed command, compose exactly what rank 0 composed.
"""

from __future__ import annotations

from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from progan_lightning.run_record import recorded_overrides

RESUME_KEY = "resume"


def override_key(override: str) -> str:
    """The key (or config group) an override sets: ``data`` for ``data=folder`` and
    ``+data=folder``, ``a.b`` for ``a.b=1`` and ``~a.b``."""
    parsed = OverridesParser.create().parse_override(override)
    return (
        parsed.key_or_group
        if parsed.package is None
        else f"{parsed.key_or_group}@{parsed.package}"
    )


def _value(overrides: list[str], key: str) -> str | None:
    parser = OverridesParser.create()
    found = None
    for override in overrides:
        parsed = parser.parse_override(override)
        if parsed.key_or_group == key and not parsed.is_delete():
            value = parsed.value()
            found = None if value is None else str(value)
    return found


def with_recorded_overrides(overrides: list[str]) -> list[str]:
    """``overrides`` completed for a resume by folder: ``resume=RUN`` spelt out as
    ``ckpt_path=last hydra.run.dir=RUN``; when they set ``ckpt_path`` and ``hydra.run.dir``
    (a path, not an interpolation) and that folder holds a record, its recorded overrides
    come first, less those whose key the new ones set. Anything else is returned as it is
    (Hydra reports an override it cannot parse).

    Raises:
        ValueError: The folder's record is not a list of overrides.
    """
    try:
        expanded: list[str] = []
        for override in overrides:
            if override_key(override) == RESUME_KEY:
                run = _value([override], RESUME_KEY)
                expanded += ["ckpt_path=last", f"hydra.run.dir={run}"]
            else:
                expanded.append(override)
        run_dir = _value(expanded, "hydra.run.dir")
        if not _value(expanded, "ckpt_path") or not run_dir or "${" in run_dir:
            return expanded
        recorded = recorded_overrides(run_dir) or []
        given = {override_key(o) for o in expanded}
        kept = [o for o in recorded if override_key(o) not in given]
    except HydraException:
        return overrides
    return [*kept, *expanded]


def complete_argv(argv: list[str]) -> list[str]:
    """A command line (without the program) with its overrides completed by
    :func:`with_recorded_overrides`: its flags first, then the overrides. A multirun (``-m``)
    is left as it is: each job's run dir is only known once the sweep has begun."""
    args, unknown = get_args_parser().parse_known_args(argv)
    if args.multirun or not args.overrides or unknown:
        return argv
    flags = list(argv)
    for override in args.overrides:
        flags.remove(override)
    return [*flags, *with_recorded_overrides(args.overrides)]
