"""The supported grid: Django 5.2 LTS, 6.0 and 6.1 on Python 3.10 to 3.13 wherever that
Django supports the Python (6.x needs 3.12 or newer). tox.ini's ``env_list`` runs exactly
that grid and setup.cfg's classifiers say exactly that; the suite runs on one of them (or on
a newer Django)."""

from __future__ import annotations

import configparser
import itertools
import re
import sys
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
SUPPORTED_PYTHONS = {(3, 10), (3, 11), (3, 12), (3, 13)}
# Each supported Django: the oldest Python it supports.
SUPPORTED_DJANGOS = {(5, 2): (3, 10), (6, 0): (3, 12), (6, 1): (3, 12)}
ENV = re.compile(r"py3(?P<python>\d+)-django(?P<major>\d)(?P<minor>\d)")


def expanded(entry: str) -> list[str]:
    """``py312-django{52,60}`` as ``["py312-django52", "py312-django60"]``."""
    parts = re.split(r"\{([^}]*)\}", entry)
    choices = [[part] if index % 2 == 0 else part.split(",") for index, part in enumerate(parts)]
    return ["".join(combination) for combination in itertools.product(*choices)]


def tox_envs() -> list[str]:
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    lines = tox["tox"]["env_list"].split()
    return [env for line in lines for env in expanded(line)]


def classifiers() -> list[str]:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    return setup["metadata"]["classifiers"].split("\n")


def test_tox_runs_exactly_the_supported_grid() -> None:
    grid = set()
    for env in tox_envs():
        matched = ENV.fullmatch(env)
        if matched is None:
            assert env == "custom-user", env  # the one env outside the grid
            continue
        grid.add(((3, int(matched["python"])), (int(matched["major"]), int(matched["minor"]))))
    expected = {
        (python, version)
        for version, oldest in SUPPORTED_DJANGOS.items()
        for python in SUPPORTED_PYTHONS
        if python >= oldest
    }
    assert grid == expected


def test_tox_pins_each_django_of_the_grid() -> None:
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    deps = tox["testenv"]["deps"]
    for major, minor in SUPPORTED_DJANGOS:
        pin = f"django{major}{minor}: Django>={major}.{minor},<{major}.{minor + 1}"
        assert pin in deps


def test_classifiers_name_the_supported_versions() -> None:
    listed = classifiers()
    djangos = {line.split("::")[-1].strip() for line in listed if "Framework :: Django ::" in line}
    pythons = {
        line.split("::")[-1].strip()
        for line in listed
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", line)
    }
    assert djangos == {f"{major}.{minor}" for major, minor in SUPPORTED_DJANGOS}
    assert pythons == {f"{major}.{minor}" for major, minor in SUPPORTED_PYTHONS}


def test_the_suite_runs_on_a_supported_django_and_python() -> None:
    """A Django of the grid, or a newer release (``make test`` takes the newest there is)."""
    python = sys.version_info[:2]
    version = django.VERSION[:2]
    assert python in SUPPORTED_PYTHONS
    assert version >= min(SUPPORTED_DJANGOS), f"Django {django.get_version()} is too old"
    assert python >= SUPPORTED_DJANGOS.get(version, max(SUPPORTED_DJANGOS.values()))
