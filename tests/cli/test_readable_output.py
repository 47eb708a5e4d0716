"""Help without type placeholders, the data dir git-ignored, the example report and plots in docs/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from cli import _plain_help, app, run

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"<(?:str|int|float|bool|path|text|list\[[^>]*\]|int range|float range)>|\{[a-z_]+\}")


def _commands() -> list[list[str]]:
    out: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(_plain_help(typer.main.get_command(app)), [])
    return out


def test_help_of_every_command_has_no_type_placeholders(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    commands = _commands()
    assert ["forecast"] in commands and ["simulate"] in commands and ["query", "nodes"] in commands
    for path in commands:
        assert run([*path, "--help"]) == 0
        text = capsys.readouterr().out
        assert "Usage: twin" in text
        found = PLACEHOLDER.findall(text)
        assert not found, (path, found)
    run(["forecast", "--help"])
    text = capsys.readouterr().out
    assert "twin forecast [OPTIONS] PATIENT" in text
    assert re.search(r"--horizon\s+TEXT", text) and re.search(r"--samples\s+INTEGER", text)
    assert re.search(r"--explain\s+Also list", text)  # a flag takes no value
    run(["simulate", "--help"])
    assert re.search(r"--plan\s+TEXT", capsys.readouterr().out)


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs the git checkout")
@pytest.mark.parametrize("path", ["twin-data/audit.jsonl", "twin-data/models/default/model.pt", "twin-data/twin.db",
                                  "out/demo/twin-data/audit.jsonl", "some/dir/twin-data/api-keys.db", "api/twin-data/uploads/ab12.png",
                                  "elsewhere/audit.jsonl"])
def test_data_dirs_and_audit_logs_are_git_ignored(path: str) -> None:
    r = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO)
    assert r.returncode == 0, f"{path} is not git-ignored"


def test_source_files_are_not_ignored() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git checkout")
    for path in ("cli/tables.py", "docs/img/forecast.png", "docs/example-report.md"):
        assert subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO).returncode == 1, path


def test_example_report_and_plots_are_in_docs_and_linked_from_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for png in ("forecast.png", "scenarios.png"):
        data = (REPO / "docs" / "img" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000, png
        assert f"](docs/img/{png})" in readme
    assert "](docs/example-report.md)" in readme and "bash scripts/docs-images" in readme
    assert (REPO / "scripts" / "docs-images").is_file()
    report = (REPO / "docs" / "example-report.md").read_text()
    assert "](img/forecast.png)" in report and "](img/scenarios.png)" in report
    # names a clinician reads: display names with codes, readable units, nothing cut, no node ids
    assert "Hemoglobin A1c/Hemoglobin.total in Blood (4548-4)" in report and "mmHg" in report
    assert "mL/min/1.73 m²" in report and "mm[Hg]" not in report and "{1.73_m2}" not in report
    assert "…" not in report and "Patient/" not in report and "Condition/" not in report
    assert "patient summary" in report and "standard deviations" in report
    assert "Δ vs reference" in report and "reference |" in report
