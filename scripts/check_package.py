"""Check what the built distributions hold: ``python scripts/check_package.py dist``.

The wheel must hold every file of the app that is not Python bytecode (templates, static
files, migrations, ``py.typed``, translations when there are any) and nothing from
``tests/``, ``example_project/``, ``benchmarks/`` or outside the package. The sdist must
hold LICENSE, README.rst, the packaging files and the same app files. Exit status 1 with
one line per problem otherwise.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "bitbucket_install"
FORBIDDEN_TOP_LEVEL = {"tests", "example_project", "benchmarks", ".ci", "scripts"}
# Parts of the app the wheel must carry whatever the source tree looks like today.
REQUIRED_IN_WHEEL = {
    f"{PACKAGE}/__init__.py",
    f"{PACKAGE}/py.typed",
    f"{PACKAGE}/migrations/__init__.py",
    f"{PACKAGE}/migrations/0001_initial.py",
    f"{PACKAGE}/templates/{PACKAGE}/button.html",
    f"{PACKAGE}/templatetags/{PACKAGE}.py",
}
REQUIRED_KINDS = {
    "templates": f"{PACKAGE}/templates/",
    "static files": f"{PACKAGE}/static/",
    "migrations": f"{PACKAGE}/migrations/",
}
REQUIRED_IN_SDIST = {"LICENSE", "README.rst", "setup.cfg", "pyproject.toml", "MANIFEST.in"}


def app_files() -> set[str]:
    """Every file of the package in the source tree (bytecode left out)."""
    files = set()
    for path in (ROOT / PACKAGE).rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.add(path.relative_to(ROOT).as_posix())
    return files


def the_one(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"expected exactly one {pattern} in {directory}, found {found}")
    return found[0]


def check_wheel(wheel: Path, expected: set[str]) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = {name for name in archive.namelist() if not name.endswith("/")}
    problems = [f"wheel lacks {name}" for name in sorted((expected | REQUIRED_IN_WHEEL) - names)]
    for kind, prefix in REQUIRED_KINDS.items():
        if not any(name.startswith(prefix) for name in names):
            problems.append(f"wheel holds no {kind} ({prefix})")
    if any(name.startswith(f"{PACKAGE}/locale/") for name in expected) and not any(
        name.startswith(f"{PACKAGE}/locale/") and name.endswith(".mo") for name in names
    ):
        problems.append("wheel holds no compiled translations (locale/*/LC_MESSAGES/*.mo)")
    for name in sorted(names):
        top = name.split("/", 1)[0]
        if top in FORBIDDEN_TOP_LEVEL:
            problems.append(f"wheel holds {name}")
        elif top != PACKAGE and not top.endswith(".dist-info"):
            problems.append(f"wheel holds {name}, outside the package")
        elif name.endswith((".pyc", ".pyo")) or "__pycache__" in name:
            problems.append(f"wheel holds bytecode {name}")
    return problems


def check_sdist(sdist: Path, expected: set[str]) -> list[str]:
    with tarfile.open(sdist) as archive:
        members = [member.name for member in archive.getmembers() if member.isfile()]
    # Every member sits under "<name>-<version>/".
    names = {name.split("/", 1)[1] for name in members if "/" in name}
    problems = [f"sdist lacks {name}" for name in sorted(REQUIRED_IN_SDIST - names)]
    problems += [f"sdist lacks {name}" for name in sorted(expected - names)]
    return problems


def main(argv: list[str]) -> int:
    dist = Path(argv[1]) if len(argv) > 1 else ROOT / "dist"
    wheel = the_one(dist, "*.whl")
    sdist = the_one(dist, "*.tar.gz")
    expected = app_files()
    problems = check_wheel(wheel, expected) + check_sdist(sdist, expected)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    if problems:
        return 1
    print(f"{wheel.name}: all {len(expected)} app files, nothing from tests or examples")
    print(f"{sdist.name}: LICENSE, README.rst, packaging files and all app files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
