#!/usr/bin/env python
"""Django's command-line utility for the example project (run it from anywhere).

The example project is for development only: never deploy it (see settings.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    # The repository root, so ``example_project`` (and a checkout's ``bitbucket_install``)
    # import from wherever this script is run.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
