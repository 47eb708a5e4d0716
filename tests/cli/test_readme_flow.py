"""The README's "Use it" block, run as written (in a fresh folder, with every default), in order.

synth → ingest → query → graph → train → models → forecast → simulate → api-key → serve →
forecast over HTTP. Only sizes are shrunk (patients, epochs, samples); store, model registry,
model name and key file are the defaults, and the test checks that the model ``twin train``
made is the one ``twin forecast``, ``twin simulate`` and the API use: the HTTP forecast equals
the CLI's, number for number.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SHRINK = {"--patients": "30", "--epochs": "2"}
EXTRA = {"train": ["--members", "1"], "simulate": ["--samples", "8"]}


def readme_commands() -> list[str]:
    text = README.read_text()
    block = re.search(r"## Use it.*?```bash\n(.*?)```", text, re.S)
    assert block, "README has no 'Use it' bash block"
    return [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("source ")]


def _args(line: str, subs: dict[str, str]) -> list[str]:
    for k, v in subs.items():
        line = line.replace(k, v)
    args = shlex.split(line, comments=True)
    for i, a in enumerate(args[:-1]):
        if a in SHRINK:
            args[i + 1] = SHRINK[a]
    return args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_readme_use_it_block_runs_in_order_with_defaults(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWIN_", "NEO4J_"))}
    subs: dict[str, str] = {}
    outputs: dict[str, str] = {}
    server: subprocess.Popen[str] | None = None
    commands = readme_commands()
    assert [shlex.split(c)[1] for c in commands if c.startswith("twin ")] == [
        "synth", "ingest", "query", "query", "graph", "train", "models", "forecast", "simulate", "api-key", "serve"]

    def twin(args: list[str]) -> str:
        sub = args[1]
        cmd = [sys.executable, "-m", "cli", *args[1:], *EXTRA.get(sub, [])]
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    try:
        for line in commands:
            args = _args(line, subs)
            if args[0] == "curl":
                url = args[args.index("-X") + 2]
                body = json.loads(args[args.index("-d") + 1])
                token = args[args.index("-H") + 1].split("Bearer ", 1)[1]
                r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=300)
                assert r.status_code == 200, r.text
                outputs["http-forecast"] = r.text
                continue
            sub = args[1]
            if sub == "query" and args[2] == "cohort":
                doc = json.loads(twin([*args, "--json"]))
                assert doc["count"] >= 1, "the README's cohort query finds nobody in the synthetic cohort"
                subs["<patient-id>"] = doc["patient_ids"][0]
            elif sub == "api-key":
                subs["<token>"] = json.loads(twin([*args, "--json"]))["token"]
            elif sub == "serve":
                port = _free_port()
                subs["http://127.0.0.1:8000"] = f"http://127.0.0.1:{port}"
                server = subprocess.Popen([sys.executable, "-m", "cli", *args[1:], "--port", str(port)], cwd=tmp_path,
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                deadline = time.monotonic() + 120
                while True:
                    assert server.poll() is None, server.stderr.read() if server.stderr else "server exited"
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, "twin serve did not come up"
                    time.sleep(0.5)
            elif sub in ("models", "forecast", "simulate"):
                outputs[sub] = twin([*args, "--json"])
                twin(args)  # and the human-readable form works too
            else:
                twin(args)
        assert server is not None
        with httpx.Client(base_url=subs["http://127.0.0.1:8000"],
                          headers={"Authorization": f"Bearer {subs['<token>']}"}) as api:
            served = api.get("/v1/models").json()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)

    assert (tmp_path / "twin-data" / "twin.db").is_file()
    assert (tmp_path / "twin-data" / "models" / "default" / "model.pt").is_file()
    listed = json.loads(outputs["models"])["models"]
    assert [m["name"] for m in listed] == ["default"] and listed[0]["cohort"]["patients"] == 30
    assert [m["name"] for m in served["models"]] == ["default"]
    assert served["models"][0]["trained_at"] == listed[0]["trained_at"]
    cli_fc, http_fc = json.loads(outputs["forecast"]), json.loads(outputs["http-forecast"])
    assert cli_fc["model"] == http_fc["model"] == "default"
    assert cli_fc["origin"][:19] == http_fc["origin"][:19]
    assert set(cli_fc["labs"]) == set(http_fc["labs"])
    for code, lab in cli_fc["labs"].items():  # the same model, store, origin and seed: the same numbers
        assert lab["median"] == pytest.approx(http_fc["labs"][code]["median"], rel=1e-5), code
    sim = json.loads(outputs["simulate"])
    assert sim["ok"] and sim["ranking"]["plans"] and sim["model"] == "default"
