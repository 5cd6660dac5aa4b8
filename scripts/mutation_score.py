"""The score of the last ``mutmut run`` (``make mutation``) and the mutants that survived it.

Run from the project's root once ``mutmut run`` has finished: it reads what mutmut left in
``mutants/`` and prints

- killed / total: mutants that made a test fail (or hang past mutmut's time limit), out of
  every mutant tried (all of them, unless the run was stopped or given mutant names);
- killed / testable: the same, out of the mutants a test could have caught, i.e. without
  those mutmut ran no test for ("no tests": no test calls the changed function, e.g. it
  only runs at import time) and those it skipped;
- one line per mutant that survived (and per mutant in another state than killed: no tests,
  suspicious, segfault), each as ``file:line function: -old +new`` followed by
  the name that ``mutmut show`` takes, so that a developer can find and close the gap.

The exit status is 0 whatever the score (mutation testing is a report, not a gate), 1 when
there is nothing to read (no ``mutmut run`` yet).
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MUTANTS = Path("mutants")
# Statuses that count as caught: a timeout is a mutant that made the tests hang.
CAUGHT = {"killed", "timeout", "caught by type check"}
# Statuses where no test ever ran against the mutant, so no test could have caught it.
UNTESTABLE = {"no tests", "skipped"}
# Not tried: the run was stopped, or limited to some mutants (MUTANTS=... in make).
NOT_TRIED = "not checked"


def mutmut(module: str) -> Any:
    """A module of mutmut, imported by name: mutmut is installed by the ``mutation`` extra
    only, so the lint environment (which type-checks this file) does not have it."""
    return importlib.import_module(module)


@dataclass(frozen=True)
class Mutant:
    name: str
    source: Path
    status: str


def read_mutants() -> list[Mutant]:
    """Every mutant of the last run with its status, from mutmut's ``.meta`` files."""
    status_by_exit_code = mutmut("mutmut.stats").status_by_exit_code
    found = []
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        source = meta.relative_to(MUTANTS).with_suffix("")
        exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        found += [
            Mutant(name, source, status_by_exit_code[code]) for name, code in exit_codes.items()
        ]
    return found


def function_lines(source: Path, function: str, class_name: str | None) -> range:
    """The lines of ``function`` (a method of ``class_name`` if given) in ``source``."""
    tree = ast.parse(source.read_text())
    body = tree.body
    if class_name is not None:
        classes = [n for n in body if isinstance(n, ast.ClassDef) and n.name == class_name]
        body = classes[0].body if classes else []
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            return range(node.lineno, (node.end_lineno or node.lineno) + 1)
    return range(1, 2)


def one_line(mutant: Mutant) -> str:
    """``file:line function: -old +new  name``: where the change is, what it is, and the
    name ``mutmut show`` takes."""
    diff_apply = mutmut("mutmut.mutation.diff_apply")
    names = mutmut("mutmut.utils.format_utils")
    diff = diff_apply.get_diff_for_mutant(mutant.name, path=mutant.source)
    changed = [line for line in diff.splitlines() if not line.startswith(("---", "+++", "@@"))]
    removed = [line[1:].strip() for line in changed if line.startswith("-")]
    added = [line[1:].strip() for line in changed if line.startswith("+")]
    function, class_name = names.orig_function_and_class_names_from_key(mutant.name)
    lines = function_lines(mutant.source, function, class_name)
    source_lines = mutant.source.read_text().splitlines()
    # The line the mutation changed: the first of the function's lines that the mutant lost.
    line = next(
        (n for n in lines if removed and source_lines[n - 1].strip() == removed[0]), lines[0]
    )
    qualified = f"{class_name}.{function}" if class_name else function
    change = " ".join([f"-{text}" for text in removed] + [f"+{text}" for text in added])
    return f"{mutant.source}:{line} {qualified}: {change}  [{mutant.name}]"


def percent(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.1f}%)" if whole else f"{part}/0"


def main() -> int:
    generated = read_mutants()
    mutants = [mutant for mutant in generated if mutant.status != NOT_TRIED]
    if not mutants:
        print("No mutant was tried in mutants/: run `make mutation` (or `mutmut run`) first.")
        return 1
    by_status = Counter(mutant.status for mutant in mutants)
    caught = sum(by_status[status] for status in CAUGHT)
    testable = len(mutants) - sum(by_status[status] for status in UNTESTABLE)

    print()
    if len(mutants) < len(generated):
        print(f"{len(generated) - len(mutants)} of {len(generated)} mutants not tried: left out.")
    print("Mutants by status: " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())))
    print(f"Score, killed / total:    {percent(caught, len(mutants))}")
    print(f"Score, killed / testable: {percent(caught, testable)}  (without no tests and skipped)")
    for source, count in sorted(Counter(m.source for m in mutants).items()):
        of_file = [m for m in mutants if m.source == source]
        print(f"  {source}: {percent(sum(m.status in CAUGHT for m in of_file), count)}")
    # Survivors first: they are the gaps; the other states are listed after them.
    for status in sorted(set(by_status) - CAUGHT, key=lambda s: (s != "survived", s)):
        print()
        print(f"{status} ({by_status[status]}):")
        for mutant in mutants:
            if mutant.status == status:
                print("  " + one_line(mutant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
