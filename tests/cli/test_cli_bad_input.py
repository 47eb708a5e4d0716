"""Every ``twin`` command, given bad arguments, fails with one ``error:`` line and no traceback.

The registered commands are walked from ``cli.app``: a command added without bad-input cases
here fails :func:`test_every_command_has_bad_input_cases`. Cases run in process through
:func:`cli.run` (what the ``twin`` console script runs); a few run as real subprocesses too.
Bad inputs: unknown patients, missing files and folders, malformed JSON, bad dates, bad
numbers, unknown options, store URLs that cannot work (Neo4j commands on an SQLite store).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

import cli
from graph import MAX_PREDICATE_TERMS, ingest_paths, open_store
from tests.api.helpers import tiny_bundle

PID = "cli-bad-input-pt"
LEAF = {"has_condition": "44054006"}

#: command path -> lists of arguments that must be refused ({tmp} is a scratch folder, {store}
#: the URL of a store holding patient PID).
CASES: dict[tuple[str, ...], list[list[str]]] = {
    ("ingest",): [["{tmp}/nonexistent.json"], ["{tmp}/bad.json"], ["{tmp}/bad.json", "--keep-going"],
                  ["{tmp}/nonexistent.json", "--store", "foo://bar"]],
    ("summary",): [["--store", "foo://bar"], ["--store", "sqlite:///{tmp}"], ["--store", "bolt://127.0.0.1:1"]],
    ("graph",): [["nobody"], [PID, "--format", "xml"], [PID, "--as-of", "yesterday"],
                 [PID, "--out", "{tmp}/no/such/folder/g.json"], [PID, "--deidentify"]],
    ("train",): [["--epochs", "x"], ["--epochs", "0"], ["--members", "-1"], ["--store", "sqlite:///{tmp}/empty.db"],
                 ["--name", "Bad Name!"], ["--threads", "0"], ["--step-days", "0"], ["--horizon-days", "-3"],
                 ["--target", "no-such-lab"], ["--treatment", "no-such-drug"], ["--event", "stroke"]],
    ("models",): [["--models", "{tmp}/a-file"], ["--bogus"]],
    ("export", "meds"): [["{tmp}/m1", "--where", "{not json"], ["{tmp}/m2", "--deidentify"],
                         ["{tmp}/m3", "--shard-size", "0"], ["{tmp}/m4", "--store", "foo://bar"],
                         ["{tmp}/a-file"], [], ["{tmp}/m5", "--store", "{store}", "--format", "x"]],
    ("forecast",): [["nobody"], [PID], [PID, "--horizon", "banana"], [PID, "--as-of", "yesterday"],
                    [PID, "--samples", "x"], [PID, "--model", "../../etc"], [PID, "--format", "xml"]],
    ("serve",): [["--settings", "{tmp}/none.yaml"], ["--port", "notaport"], ["--settings", "{tmp}/bad.json"]],
    ("synth",): [["--out", "{tmp}/s", "--patients", "0"], ["--out", "{tmp}/s", "--years", "-1"], ["--patients", "3"],
                 ["--out", "{tmp}/s", "--confounding", "2"]],
    ("synth-plots",): [["--cohort", "{tmp}/no-cohort", "--out", "{tmp}/plots"], ["--patients", "many"]],
    ("simulate",): [[PID, "--plan", "{tmp}/none.yaml"], [PID, "--plan", "{tmp}/bad.json"],
                    ["nobody", "--plan", "builtin:diabetes"], [PID, "--plan", "builtin:no-such-regimen"],
                    [PID, "--plan", "builtin:diabetes", "--horizon", "-5d"], [PID],
                    [PID, "--plan", "builtin:general", "--format", "xml"]],
    ("trial",): [["--cohort", "{not json", "--plan", "builtin:no treatment", "--plan", "builtin:general"],
                 ["--cohort", json.dumps(LEAF), "--plan", "builtin:no treatment"],
                 ["--cohort", json.dumps(LEAF), "--plan", "{tmp}/none.yaml", "--plan", "builtin:no treatment"],
                 ["--cohort", json.dumps(LEAF), "--plan", "builtin:general"],
                 ["--cohort", json.dumps(LEAF), "--plan", "builtin:general", "--day", "banana"],
                 ["--cohort", json.dumps(LEAF), "--plan", "builtin:general", "--better", "HbA1c=up"],
                 ["--cohort", json.dumps(LEAF), "--plan", "builtin:general", "--samples", "1"]],
    ("cypher",): [["MATCH (n) RETURN n"], ["MATCH (n) RETURN n", "--param", "novalue"], ["x", "--limit", "x"]],
    ("copy-store",): [["--src", "{store}", "--dst", "{store}"], ["--src", "foo://x", "--dst", "sqlite:///{tmp}/b.db"],
                      ["--src", "{store}", "--dst", "sqlite:///{tmp}/c.db", "--batch-size", "0"], ["--src", "{store}"]],
    ("export-neo4j",): [["--from", "{store}", "--to", "sqlite:///{tmp}/d.db"]],
    ("import-neo4j",): [["--from", "{store}", "--to", "sqlite:///{tmp}/e.db"]],
    ("demo",): [["--out", "{tmp}/demo", "--patients", "0"], ["--epochs", "zero"], ["--out", "{tmp}/demo", "--members", "0"]],
    ("query", "timeline"): [["nobody"], [PID, "--as-of", "yesterday"], [PID, "--type", "Spaceship"], []],
    ("query", "cohort"): [["{not json"], ['{"frobnicate": 1}'], ['{"all": []}'], ["[1, 2]"],
                          ['{"lab": "2339-0", "op": ">", "value": "high"}'],
                          ['{"not": ' * 11 + json.dumps(LEAF) + "}" * 11], ["[" * 100_000],
                          [json.dumps({"any": [LEAF] * (MAX_PREDICATE_TERMS + 1)})],
                          [json.dumps(LEAF), "--as-of", "yesterday"]],
    ("query", "nodes"): [["--limit", "0"], ["--limit", "x"], ["--start", "2021-01-01", "--end", "2020-01-01"],
                         ["--type", "Spaceship"]],
    ("api-key", "create"): [["--name", "x", "--scope", "bogus"], ["--name", "  ", "--scope", "admin"], ["--name", "x"]],
    ("api-key", "list"): [["--settings", "{tmp}/none.yaml"]],
    ("api-key", "revoke"): [["nope"], []],
}

#: Commands that cannot be run with bad arguments here, and why (none today: `serve` fails on
#: its settings before it would start a server).
SKIPPED: dict[tuple[str, ...], str] = {}


def _commands() -> list[tuple[str, ...]]:
    def walk(c: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        subs = getattr(c, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, (*path, name))
        else:
            yield path

    return list(walk(typer.main.get_command(cli.app), ()))


def _has_json(path: tuple[str, ...]) -> bool:
    c: object = typer.main.get_command(cli.app)
    for name in path:
        c = c.commands[name]  # type: ignore[attr-defined]
    return any("--json" in getattr(p, "opts", ()) for p in c.params)  # type: ignore[attr-defined]


def test_every_command_has_bad_input_cases() -> None:
    registered = set(_commands())
    assert registered == set(CASES) | set(SKIPPED), (
        f"commands without bad-input cases: {sorted(registered - set(CASES) - set(SKIPPED))}; "
        f"cases for unknown commands: {sorted(set(CASES) - registered)}")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "bad.json").write_text('{"resourceType": "Bundle", "entry": [')
    (tmp / "a-file").write_text("not a folder")
    (tmp / "bundle.json").write_text(json.dumps(tiny_bundle(PID, n_obs=2)))
    store = f"sqlite:///{tmp / 'store.db'}"
    with open_store(store) as st:
        assert not ingest_paths(st, [tmp / "bundle.json"]).errors
    return {"tmp": str(tmp), "store": store}


@pytest.fixture()
def env(scratch: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    tmp = Path(scratch["tmp"])
    for k in [k for k in os.environ if k.startswith("TWIN_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("TWIN_STORE", scratch["store"])
    monkeypatch.setenv("TWIN_MODEL_PATH", str(tmp / "models"))
    monkeypatch.setenv("TWIN_KEYS_DB", str(tmp / "keys.db"))
    monkeypatch.setenv("TWIN_AUDIT_LOG", str(tmp / "audit.jsonl"))
    monkeypatch.setenv("TWIN_JOBS_DB", str(tmp / "jobs.db"))
    monkeypatch.setenv("TWIN_UPLOAD_DIR", str(tmp / "uploads"))
    threads = None
    if "torch" in sys.modules:
        threads = sys.modules["torch"].get_num_threads()
    yield scratch
    if "torch" in sys.modules and threads is not None:  # commands set torch's threads: give them back
        sys.modules["torch"].set_num_threads(threads)


def _cases() -> list[object]:
    out = []
    for path, arg_lists in CASES.items():
        for i, args in enumerate(arg_lists):
            out.append(pytest.param(path, args, id=f"{' '.join(path)}-{i}"))
    return out


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    return [a.replace("{tmp}", env["tmp"]).replace("{store}", env["store"]) for a in args]


@pytest.mark.parametrize(("path", "args"), _cases())
def test_bad_input_is_one_error_line(path: tuple[str, ...], args: list[str], env: dict[str, str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.run([*path, *_expand(args, env)])
    out, err = capsys.readouterr()
    assert rc != 0, (rc, out[-1000:], err[-1000:])
    assert "Traceback" not in out + err, err[-3000:]
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    if _has_json(path) and "--json" not in args:
        rc = cli.run([*path, *_expand(args, env), "--json"])
        out, err = capsys.readouterr()
        assert rc != 0 and "Traceback" not in out + err, err[-3000:]
        doc = json.loads(out)
        assert doc["ok"] is False, doc
        assert doc["error"]["reason"] if "error" in doc else doc["errors"], doc  # `ingest` reports per file


@pytest.mark.parametrize("args", [["query", "cohort", "{not json"], ["query", "nodes", "--limit", "x"],
                                  ["no-such-command"], ["synth-plots", "--cohort", "/nonexistent/cohort"]])
def test_the_console_command_prints_one_error_line(args: list[str], scratch: dict[str, str]) -> None:
    env = {**os.environ, "TWIN_STORE": scratch["store"]}
    env.pop("TWIN_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode in (1, 2), proc
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def test_help_and_no_arguments_are_not_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["--help"]) == 0
    assert "Usage" in capsys.readouterr().out
    assert cli.run([]) == 2  # help, with click's status for "no command given"
    assert "Usage" in capsys.readouterr().out
