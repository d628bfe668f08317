"""The lowest-versions constraints (`make test-lowest`) pin what pyproject.toml declares."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _lower_bounds() -> dict[str, str]:
    """Each runtime dependency (and optional one) with its ``>=`` bound."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + list(project["optional-dependencies"]["diagrams"])
    bounds = {}
    for text in declared:
        requirement = Requirement(text)
        floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert len(floors) == 1, f"{text!r} needs exactly one lower bound"
        bounds[canonicalize_name(requirement.name)] = floors[0]
    return bounds


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "lowest.txt").read_text().splitlines():
        pin = line.split("#", 1)[0].strip()
        if pin:
            name, _, version = pin.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_lowest_constraints_pin_every_lower_bound() -> None:
    """Every dependency is pinned at its declared floor, so the lowest run tests that floor."""
    pins = _pins()
    for name, floor in _lower_bounds().items():
        assert name in pins, f"{name} is not pinned in .ci/lowest.txt"
        assert Version(pins[name]) == Version(floor), f"{name}: pinned {pins[name]}, floor {floor}"
