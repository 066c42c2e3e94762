"""The linter and the type checker, as tests, so that the README's test command runs them:
ruff (lint and import order) on the whole tree, mypy on the library layer (pyproject.toml
configures both)."""

import pathlib
import subprocess
import sys

import pytest
from cli_runs import ROOT


def tool(name: str) -> str:
    """The tool installed beside this interpreter (the test extra installs both)."""
    path = pathlib.Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed beside {sys.executable}: pip install -e '.[test]'")
    return str(path)


def test_ruff_finds_nothing():
    result = subprocess.run([tool("ruff"), "check", "--no-cache", "."], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_mypy_finds_nothing_in_the_library(tmp_path):
    result = subprocess.run([tool("mypy"), "--cache-dir", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
