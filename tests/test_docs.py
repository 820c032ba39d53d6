"""The documentation says what the code does: every option, marker argument and command.

docs/options.md is generated from the options table (``tools/gen_options_doc.py``), so
the tests here check that the committed page is what the generator writes today, and
that what the README names exists.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from pytest_energy.options import MARKER_KEYWORDS, SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
OPTIONS_DOC = ROOT / "docs" / "options.md"


def _generator() -> ModuleType:
    """tools/gen_options_doc.py, loaded by path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_options_doc",
                                                  ROOT / "tools" / "gen_options_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_options_reference_is_generated_from_the_table() -> None:
    expected = _generator().render()
    assert OPTIONS_DOC.read_text(encoding="utf-8") == expected, (
        "docs/options.md is stale: run python tools/gen_options_doc.py")


def test_every_option_is_documented() -> None:
    text = OPTIONS_DOC.read_text(encoding="utf-8")
    missing = [name for s in SETTINGS for name in (s.cli, s.env, s.ini) if name not in text]
    assert not missing, f"docs/options.md lacks: {missing}"
    assert "docs/options.md" in README, "README must link the full options reference"


def test_readme_names_only_real_options() -> None:
    """The README shows a selection of options; each one it names must exist."""
    names = {name for s in SETTINGS for name in (s.cli, s.env, s.ini)}
    named = set(re.findall(r"--energy-[a-z][a-z-]*[a-z]", README))
    named |= set(re.findall(r"\bPYTEST_ENERGY_[A-Z_]*[A-Z]\b", README))
    named |= set(re.findall(r"\benergy_[a-z_]*[a-z]\b", README)) - {"energy_budget"}
    unknown = sorted(n for n in named if n not in names and n != "PYTEST_ENERGY_NAME")
    assert not unknown, f"README names options that do not exist: {unknown}"


def test_every_marker_argument_is_documented() -> None:
    missing = [k for k in MARKER_KEYWORDS if f"`{k}`" not in README]
    assert not missing, f"README marker table lacks: {missing}"


def test_quickstart_has_exactly_two_command_lines() -> None:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2
    assert "pytest examples" in lines[0] and lines[1].endswith("pytest")
