"""``twin ingest``, ``twin query …``, ``twin graph``: records in, graph out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.common import JsonOpt, StoreOpt, emit_json, fail, parse_as_of
from core import QueryError, TwinError
from graph import (
    NodeType,
    cohort,
    deidentify,
    display_unit,
    find_nodes,
    ingest_paths,
    node_document,
    open_store,
    patient_graph,
    predicate_from_json,
    timeline,
    to_networkx,
    to_node_link,
)

__all__ = ["register"]

query_app = typer.Typer(help="Query the patient graph: timelines, nodes, cohorts.", no_args_is_help=True)
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Cut the graph at this date/time (ISO 8601, UTC).")]


def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, folders or globs: FHIR JSON/NDJSON, Synthea CSV folders, MEDS dataset folders, VCF, images.")],
    store: StoreOpt = None,
    keep_going: Annotated[bool, typer.Option(help="Report a bad file and continue with the next one.")] = False,
    patient: Annotated[str | None, typer.Option(help="Patient id for VCF/image files that do not name one.")] = None,
    namespace: Annotated[str | None, typer.Option(
        help="Source system whose id space the records use (patient ids become NAMESPACE:id); "
             "give each EHR its own so reused ids never meet.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest records into the graph store (one transaction per file; re-ingest adds nothing)."""
    from rich.progress import Progress


    try:
        with open_store(store) as st:
            with Progress(transient=True, disable=as_json) as bar:
                task = bar.add_task("ingesting", total=None)
                report = ingest_paths(st, paths, keep_going=keep_going, patient_id=patient, namespace=namespace,
                                      on_file=lambda r: bar.advance(task))
            counts = st.counts()
    except TwinError as exc:
        fail(exc, as_json)
        return
    doc = {**report.to_dict(), "store": {"nodes": counts.nodes, "edges": counts.edges, "pending_edges": counts.pending_edges}}
    doc["ok"] = not report.errors
    if as_json:
        emit_json(doc)
    else:
        _print_ingest(doc)
    if report.errors:
        if not as_json:
            first = doc["errors"][0]
            where = " ".join(str(first[k]) for k in ("file", "resource") if first.get(k))
            typer.secho(f"error: {len(doc['errors'])} file(s) refused (nothing stored from them); first: "
                        f"{where}: {first.get('reason')}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def _print_ingest(doc: dict) -> None:
    con = Console()
    tot = doc["totals"]
    t = Table(title=f"read {tot['resources']} resource(s) from {len(doc['files'])} file(s): "
                    f"{tot['stored']} stored, {tot['skipped']} skipped, {tot['rejected']} rejected")
    t.add_column("node type")
    t.add_column("from these files", justify="right")
    t.add_column("in store", justify="right")
    for k in sorted(set(doc["nodes_by_type"]) | set(doc["store"]["nodes"])):
        t.add_row(k, str(doc["nodes_by_type"].get(k, 0)), str(doc["store"]["nodes"].get(k, 0)))
    con.print(t)
    if doc["skipped"]:
        s = Table(title="skipped resource types")
        s.add_column("resource type")
        s.add_column("count", justify="right")
        for k, v in sorted(doc["skipped"].items(), key=lambda kv: -kv[1]):
            s.add_row(k, str(v))
        con.print(s)
    for err in doc["errors"]:
        where = " ".join(str(err[k]) for k in ("file", "resource") if err.get(k))
        fld = f" field {err['field']!r}" if err.get("field") else ""
        con.print(f"[red]error[/red] {where}{fld}: {err.get('reason')}")


@query_app.command("timeline")
def query_timeline(
    patient: Annotated[str, typer.Argument(help="Patient id.")],
    store: StoreOpt = None,
    as_of: AsOfOpt = None,
    types: Annotated[list[str] | None, typer.Option("--type", help="Only these node types (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A patient's records in time order."""

    try:
        wanted = [NodeType(t) for t in types] if types else None
        with open_store(store) as st:
            nodes = timeline(st, patient, as_of=parse_as_of(as_of), types=wanted)
    except (TwinError, ValueError) as exc:
        fail(exc if isinstance(exc, TwinError) else QueryError(str(exc)), as_json)
        return
    if as_json:
        emit_json({"ok": True, "patient_id": patient, "count": len(nodes), "nodes": [node_document(n) for n in nodes]})
        return
    t = Table(title=f"timeline of {patient} ({len(nodes)} records)")
    for c in ("time", "type", "code", "display", "value"):
        t.add_column(c, overflow="fold")  # names wrap, never cut
    for n in nodes:
        val = "" if n.value is None else f"{n.value:g} {display_unit(n.unit)}".strip()
        t.add_row(n.time.isoformat() if n.time else "", n.type.value, n.code or "", escape(n.display or ""), escape(val))
    Console().print(t)


@query_app.command("cohort")
def query_cohort(
    predicate: Annotated[str, typer.Argument(help='Predicate JSON, e.g. \'{"all": [{"has_condition": "44054006"}, {"lab": "4548-4", "op": ">", "value": 7}]}\'')],
    store: StoreOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Patients for whom a composed predicate holds (at most MAX_PREDICATE_DEPTH levels of all/any/not
    and MAX_PREDICATE_TERMS terms; see graph.predicates)."""

    try:
        pred = predicate_from_json(predicate)  # limits checked before the store is opened
        when = parse_as_of(as_of)
        with open_store(store) as st:
            ids = cohort(st, pred, as_of=when)
    except TwinError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({"ok": True, "count": len(ids), "patient_ids": ids})
    else:
        typer.echo(f"{len(ids)} patient(s)")
        for i in ids:
            typer.echo(i)


@query_app.command("nodes")
def query_nodes(
    store: StoreOpt = None,
    types: Annotated[list[str] | None, typer.Option("--type", help="Node type (repeatable).")] = None,
    codes: Annotated[list[str] | None, typer.Option("--code", help="Code (repeatable).")] = None,
    patient: Annotated[str | None, typer.Option(help="Only this patient.")] = None,
    start: Annotated[str | None, typer.Option(help="Window start (inclusive).")] = None,
    end: Annotated[str | None, typer.Option(help="Window end (inclusive).")] = None,
    as_of: AsOfOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many nodes.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Nodes by type, code and time window."""

    try:
        with open_store(store) as st:
            nodes = find_nodes(
                st,
                types=[NodeType(t) for t in types] if types else None,
                codes=codes or None,
                patient_id=patient,
                start=parse_as_of(start, "--start"),
                end=parse_as_of(end, "--end"),
                as_of=parse_as_of(as_of),
                limit=limit,
            )
    except (TwinError, ValueError) as exc:
        fail(exc if isinstance(exc, TwinError) else QueryError(str(exc)), as_json)
        return
    if as_json:
        emit_json({"ok": True, "count": len(nodes), "nodes": [node_document(n) for n in nodes]})
    else:
        for n in nodes:
            typer.echo(f"{n.time.isoformat() if n.time else '-':25} {n.type.value:10} {n.code or '':12} {n.id}")


def graph_export(
    patient: Annotated[str, typer.Argument(help="Patient id.")],
    store: StoreOpt = None,
    as_of: AsOfOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="node-link (JSON) or graphml.")] = "node-link",
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    deid: Annotated[bool, typer.Option("--deidentify", help="Hash ids and drop identifying properties (needs TWIN_DEID_SALT).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a patient's graph as of a time (node-link JSON or GraphML)."""
    import os

    import networkx as nx


    try:
        with open_store(store) as st:
            g = patient_graph(st, patient, as_of=parse_as_of(as_of))
        if deid:
            salt = os.environ.get("TWIN_DEID_SALT")
            if not salt:
                raise QueryError("--deidentify needs a secret salt in TWIN_DEID_SALT")
            g = deidentify(g, salt=salt)
        if fmt not in ("node-link", "graphml"):
            raise QueryError(f"--format must be node-link or graphml, got {fmt!r}")
    except TwinError as exc:
        fail(exc, as_json)
        return
    if fmt == "graphml":
        nxg = to_networkx(g)
        for _, d in nxg.nodes(data=True):
            d["props"] = json.dumps(d["props"], sort_keys=True)
            for k in [k for k, v in d.items() if v is None]:
                d.pop(k)
        text = "\n".join(nx.generate_graphml(nxg))
    else:
        text = json.dumps(to_node_link(g), indent=1, sort_keys=True)
    if out is not None:
        try:
            out.write_text(text + "\n")
        except OSError as exc:
            fail(QueryError(f"--out {out}: cannot write: {exc.strerror or exc}"), as_json)
        summary = {"ok": True, "out": str(out), "nodes": len(g.nodes), "edges": len(g.edges), "by_type": g.counts()}
        emit_json(summary) if as_json else typer.echo(f"wrote {out}: {len(g.nodes)} nodes, {len(g.edges)} edges")
    else:
        typer.echo(text)


def summary(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Node and edge counts of the store."""
    try:
        with open_store(store) as st:
            c = st.counts()
            url = st.url
            n_pat = len(st.patient_ids())
    except TwinError as exc:
        fail(exc, as_json)
        return
    doc = {"ok": True, "store": url, "patients": n_pat, "nodes": c.nodes, "edges": c.edges, "pending_edges": c.pending_edges}
    if as_json:
        emit_json(doc)
        return
    t = Table(title=f"{url}: {n_pat} patients")
    t.add_column("kind")
    t.add_column("name")
    t.add_column("count", justify="right")
    for k, v in c.nodes.items():
        t.add_row("node", k, str(v))
    for k, v in c.edges.items():
        t.add_row("edge", k, str(v))
    Console().print(t)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``twin`` app."""
    app.command("ingest")(ingest)
    app.command("summary")(summary)
    app.command("graph")(graph_export)
    app.add_typer(query_app, name="query")
