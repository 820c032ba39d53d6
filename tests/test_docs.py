"""The README documents every option and marker argument the plugin accepts."""

from __future__ import annotations

from pathlib import Path

from pytest_energy.options import ALL_SETTINGS, MARKER_KEYWORDS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_option_is_documented() -> None:
    missing = [s.cli for s in ALL_SETTINGS if s.cli not in README]
    missing += [s.ini for s in ALL_SETTINGS if s.ini not in README]
    assert not missing, f"README lacks: {missing}"


def test_every_marker_argument_is_documented() -> None:
    missing = [k for k in MARKER_KEYWORDS if f"`{k}`" not in README]
    assert not missing, f"README marker table lacks: {missing}"


def test_quickstart_has_exactly_two_command_lines() -> None:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2
    assert "pytest examples" in lines[0] and lines[1].endswith("pytest")


def test_gate_and_rightsizing_options_are_documented() -> None:
    from pytest_energy.gate import GATE_SETTINGS
    from pytest_energy.rightsizing_options import RIGHTSIZING_SETTINGS

    missing = [s.cli for s in (*GATE_SETTINGS, *RIGHTSIZING_SETTINGS) if s.cli not in README]
    assert not missing, f"README lacks: {missing}"
