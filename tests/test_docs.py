"""The documentation's links land (files and heading anchors), the config comments' and code's
references to the docs too, and no machine path is written anywhere in the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PAGES += sorted((REPO / "benchmarks").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")
REFERENCE = re.compile(r"\b((?:docs|benchmarks)/[\w./-]+\.md)(#[\w-]+)?")


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in page.read_text().splitlines() if line[:1] == "#"}


def broken(target: Path, anchor: str | None) -> str | None:
    if not target.exists():
        return "no such file"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"no heading #{anchor}"
    return None


def test_the_slug_is_githubs():
    assert slug(" CUDA: NVIDIA H100 80GB HBM3") == "cuda-nvidia-h100-80gb-hbm3"
    assert slug(" `torch.compile` of G") == "torchcompile-of-g"


def test_every_relative_link_of_the_docs_lands():
    problems = []
    for page in PAGES:
        for link in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", link):
                continue  # https:, mailto:
            path, _, anchor = link.partition("#")
            target = (page.parent / path) if path else page
            if why := broken(target, anchor or None):
                problems.append(f"{page.relative_to(REPO)}: {link}: {why}")
    assert problems == []


def test_references_to_the_docs_from_configs_and_code_land():
    problems = []
    files = [*(REPO / "conf").rglob("*.yaml"), *(REPO / "src").rglob("*.py")]
    files += [*(REPO / "benchmarks").rglob("*.py")]
    for file in files:
        for path, anchor in REFERENCE.findall(file.read_text()):
            if why := broken(REPO / path, anchor.lstrip("#") or None):
                problems.append(f"{file.relative_to(REPO)}: {path}{anchor}: {why}")
    assert problems == []


@pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout"
)
def test_no_machine_path_outside_the_tests():
    found = subprocess.run(
        ["git", "grep", "-nE", r"(/work/|/tmp/[a-z]|/home/[a-z]|/root/)", "--", ".", ":!tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 1, found.stdout  # 1: no line matched


def test_the_faults_page_names_tests_that_exist_and_the_exit_statuses_in_use():
    from progan_lightning import faults

    text = (REPO / "docs" / "faults.md").read_text()
    defined = {
        name
        for path in (REPO / "tests").rglob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M)
    }
    named = set(re.findall(r"`(test_\w+)`", text))
    assert named and named <= defined
    statuses = (
        "2 a user error (one line naming the setting and the fix), 3 training diverged, 4 a\n"
        "write failed"
    )
    assert statuses in text
    assert (faults.USER_ERROR_EXIT_CODE, faults.DIVERGED_EXIT_CODE) == (2, 3)
    assert faults.WRITE_FAILED_EXIT_CODE == 4


def test_the_layout_lists_every_module_of_bench_and_every_study():
    text = (REPO / "docs" / "layout.md").read_text()
    bench = (REPO / "src" / "progan_lightning" / "bench").glob("*.py")
    studies = (REPO / "benchmarks").glob("*.py")
    for path in [*bench, *studies]:
        if not path.stem.startswith("__"):
            assert re.search(rf"\b{path.stem}\b", text), path.name
    assert "benchmarks/" in text
