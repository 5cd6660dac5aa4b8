"""Every Python block of README.rst outside the quickstart (which test_quickstart.py runs
whole) is valid Python, and every name it imports from the app exists: a reader who pastes
one gets no SyntaxError or ImportError from a renamed or misspelt name."""

from __future__ import annotations

import ast
import importlib
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.rst"


def python_blocks() -> list[str]:
    """The bodies of the ``.. code-block:: python`` directives, dedented."""
    blocks: list[str] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line.strip() != ".. code-block:: python":
            continue
        body: list[str] = []
        for following in lines[number + 1 :]:
            if following and not following.startswith(" "):
                break
            body.append(following)
        blocks.append(textwrap.dedent("\n".join(body)).strip() + "\n")
    return blocks


def test_the_readme_has_python_blocks_after_the_quickstart() -> None:
    assert any("webhook_received" in block for block in python_blocks())
    assert any("BitbucketClient" in block for block in python_blocks())


@pytest.mark.parametrize("block", python_blocks())
def test_each_python_block_parses_and_its_app_imports_exist(block: str) -> None:
    tree = ast.parse(block)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "bitbucket_install"
        ):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module}.{alias.name}"
