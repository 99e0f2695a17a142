"""Where hardline's data files are, in a checkout and in an installed wheel.

In a checkout the jinja2 templates live in the repository's top-level ``templates/`` (mirroring
target paths, as the design card lays out); a wheel ships the same files as package data under
``hardline/templates``. Catalogs and defaults are package data in both cases.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """The jinja2 templates: ``hardline/templates`` when installed, ``templates/`` in a checkout."""
    packaged = PACKAGE_DIR / "templates"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "templates"


TEMPLATES = templates_dir()
