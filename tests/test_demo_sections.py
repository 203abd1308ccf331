"""The demo skips a section whose optional extra is missing, and says how to install it."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from medshield.experiments import DEMO_SECTIONS, RunOptions, run_demo
from medshield.results import ResultsFile


def _missing(pkg: str):  # type: ignore[no-untyped-def]
    def section(opts: RunOptions) -> ResultsFile:
        raise ModuleNotFoundError(f"No module named {pkg!r}", name=pkg)

    return section


@pytest.fixture
def fake_sections():  # type: ignore[no-untyped-def]
    names = ["zz-needs-flwr", "zz-needs-typo"]
    DEMO_SECTIONS.register(names[0])(_missing("flwr.serverapp"))
    DEMO_SECTIONS.register(names[1])(_missing("not_a_real_package"))
    yield names
    for n in names:
        DEMO_SECTIONS._entries.pop(n, None)  # type: ignore[attr-defined]


def test_missing_extra_is_a_note_and_a_real_import_error_is_raised(
    tmp_path: Path, fake_sections: list[str]
) -> None:
    opts = RunOptions(out=tmp_path, mode="fast")
    quiet = Console(file=open(tmp_path / "log.txt", "w"))  # noqa: SIM115
    res = run_demo(opts, sections=[fake_sections[0]], console=quiet)
    assert any("pip install -e '.[federated]'" in n for n in res.notes)
    assert (tmp_path / "report.html").exists()
    with pytest.raises(ModuleNotFoundError, match="not_a_real_package"):
        run_demo(opts, sections=[fake_sections[1]], console=quiet)
