"""pyproject.toml declares what the package imports and nothing else, and the README's test
command is the one CI runs, with pytest-xdist's options there rather than in addopts."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

from helpers import REPO

DISTRIBUTIONS = {
    "PIL": "pillow",
    "dotenv": "python-dotenv",
    "hydra": "hydra-core",
    "yaml": "pyyaml",
}
"""Top-level import name -> its distribution, where the two differ."""

CONFIGURED = {"tensorboard": "conf/logger/tensorboard.yaml"}
"""Dependencies no module imports, each needed by a ``_target_`` of the config file named."""


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def distribution(requirement: str) -> str:
    """``"pillow>=10.1"`` -> ``"pillow"`` (normalized: lower case, ``-`` for ``_`` and ``.``)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports(root: Path) -> dict[str, set[str]]:
    """Top-level module -> the files under ``root`` importing it, outside the standard library
    and the package itself (imports inside functions too)."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "progan_lightning":
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_the_dependencies_are_what_the_package_imports():
    imported = {
        distribution(DISTRIBUTIONS.get(top, top)) for top in third_party_imports(REPO / "src")
    }
    declared = {distribution(r) for r in project()["project"]["dependencies"]}
    assert imported - declared == set(), "imported but not declared in [project] dependencies"
    assert declared - imported - set(CONFIGURED) == set(), "declared but never imported"
    for name, config in CONFIGURED.items():
        assert name in declared
        assert "_target_" in (REPO / config).read_text()


def test_the_walk_sees_imports_inside_functions(tmp_path: Path):
    assert {"tqdm", "torch", "PIL"} <= set(third_party_imports(REPO / "src"))
    assert "tqdm" in third_party_imports(REPO / "src")  # imported only inside a method


def test_a_bare_pytest_needs_no_xdist_and_the_readme_runs_what_ci_runs():
    options = project()["tool"]["pytest"]["ini_options"]
    assert options["testpaths"] == ["tests"]  # benchmarks/tests runs by its own command
    addopts = options["addopts"].split()
    xdist = ("-n", "--numprocesses", "--maxprocesses", "--dist")
    assert not [o for o in addopts if o.split("=")[0] in xdist]
    readme = (REPO / "README.md").read_text()
    command = re.search(r"Run the tests:\n\n```bash\n(.+)\n```", readme).group(1)
    assert "-n auto" in command
    assert command in (REPO / ".ci" / "run").read_text().splitlines()
