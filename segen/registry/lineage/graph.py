"""The lineage picture: data versions -> runs -> model versions, aliases marked.

One layout (three columns, one row per node) drawn two ways: an HTML page with the SVG
inline (no script, no CDN: it opens offline) or a PNG through matplotlib. The layout works
on a networkx DiGraph: the columns are its layers (data, run, model), rows come from each
node's neighbours. networkx's own layered placement (multipartite_layout) spaces each column
evenly and centres it, so a model version would not sit level with its run; a layered
layout that does (Graphviz dot, through pygraphviz or pydot) needs the Graphviz binaries,
which segen does not require. So the row rule below stays segen's own.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from segen.pipeline.store import write_atomic
from segen.project import Project
from segen.registry.lineage.queries import (
    DATA_TAG,
    Registry,
    known_data_versions,
    run_record,
)

COLUMNS = ("data", "run", "model")
_TITLES = {"data": "data versions", "run": "MLflow runs", "model": "model versions"}
_FILL = {"data": "#dbeafe", "run": "#f3f4f6", "model": "#dcfce7", "alias": "#fde68a"}
_BOX_W, _BOX_H, _COL_GAP, _ROW_GAP, _TOP = 250, 46, 110, 16, 60


@dataclass
class Node:
    id: str
    kind: str  # one of COLUMNS
    lines: tuple[str, str]  # title line, detail line
    tooltip: str
    marked: bool = False  # a model version holding an alias
    x: float = 0.0  # top-left corner, SVG pixels
    y: float = 0.0


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, node: Node) -> None:
        self.nodes.setdefault(node.id, node)

    def size(self) -> tuple[float, float]:
        bottom = max((n.y + _BOX_H for n in self.nodes.values()), default=_TOP)
        return len(COLUMNS) * (_BOX_W + _COL_GAP) - _COL_GAP + 40, bottom + 30


def build_graph(project: Project) -> Graph:
    """Every data version segen knows of, the runs tagged with one, the registered versions."""
    registry, graph = Registry(), Graph()
    for version, named_by in known_data_versions(project, registry).items():
        _add_data(graph, version, named_by)
    runs = [run_record(r) for r in registry.runs() if DATA_TAG in r.data.tags]
    for run in runs:
        _add_data(graph, run["data_version"], [])
        status = "" if run["status"] == "FINISHED" else f"  {run['status']}"
        graph.add(Node(f"run:{run['run_id']}", "run", (
            run["run_name"] or run["stage"] or "run",
            f"{run['run_id'][:10]}  {(run['started'] or '')[:16]}{status}"),
            f"run {run['run_id']} stage {run['stage']} status {run['status']}"))
        graph.edges.append((f"data:{run['data_version']}", f"run:{run['run_id']}"))
    row = {r["run_id"]: i for i, r in enumerate(runs)}  # versions in their runs' order
    for mv in sorted(registry.model_versions(), key=lambda v: (
            row.get(v.run_id, len(row)), v.name, int(v.version))):
        record = registry.version_record(mv)
        node = Node(f"model:{mv.name}/{mv.version}", "model", (
            f"{mv.name} v{mv.version}", " ".join(f"@{a}" for a in record["aliases"])
            or "(no alias)"), f"model version {mv.name}/{mv.version} from run {mv.run_id}",
            marked=bool(record["aliases"]))
        graph.add(node)
        if f"run:{mv.run_id}" in graph.nodes:
            graph.edges.append((f"run:{mv.run_id}", node.id))
        elif record["data_version"]:  # its run is gone or untagged: link the data directly
            _add_data(graph, record["data_version"], [])
            graph.edges.append((f"data:{record['data_version']}", node.id))
    layout(graph)
    return graph


def _add_data(graph: Graph, version: str, named_by: list[str]) -> None:
    where = ", ".join(n.replace("data.dvc (working tree)", "working tree") for n in named_by
                      if not n.startswith("registry")) or "not in git"
    graph.add(Node(f"data:{version}", "data", (f"data {version[:12]}", where),
                   f"data version {version}; " + "; ".join(named_by)))


def to_digraph(graph: Graph) -> nx.DiGraph:
    """The graph as a networkx DiGraph: node ids with their column as "layer", in insertion
    order (runs in time order)."""
    dag = nx.DiGraph()
    dag.add_nodes_from((n.id, {"layer": COLUMNS.index(n.kind)}) for n in graph.nodes.values())
    dag.add_edges_from(graph.edges)
    return dag


def layout(graph: Graph) -> None:
    """Runs one per row in time order; a data version level with its first run, a model
    version level with its run (pushed down when the row is taken), so arrows stay short."""
    dag = to_digraph(graph)
    layers = [[n for n, layer in dag.nodes(data="layer") if layer == column]
              for column in range(len(COLUMNS))]
    data, runs, models = layers
    want = {node_id: i for i, node_id in enumerate(runs)}
    for node_id in data:
        rows = [want[s] for s in dag.successors(node_id) if s in want]
        if rows:
            want[node_id] = min(rows)
    for node_id in models:  # its run's row, or its data version's when the run is gone
        rows = [want.get(p, len(runs)) for p in dag.predecessors(node_id)]
        if rows:
            want[node_id] = rows[-1]
    for column, ids in enumerate(layers):
        free = 0
        for node_id in sorted(ids, key=lambda i: want.get(i, len(runs))):  # stable order
            row = max(want.get(node_id, free), free)
            node = graph.nodes[node_id]
            node.x = 20 + column * (_BOX_W + _COL_GAP)
            node.y = _TOP + row * (_BOX_H + _ROW_GAP)
            free = row + 1


def _fill(node: Node) -> str:
    return _FILL["alias"] if node.marked else _FILL[node.kind]


def to_svg(graph: Graph) -> str:
    width, height = graph.size()
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
             f'height="{height:.0f}" font-family="sans-serif" font-size="12">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/>'
             '</marker></defs>']
    for i, kind in enumerate(COLUMNS):
        parts.append(f'<text x="{20 + i * (_BOX_W + _COL_GAP)}" y="34" font-size="15" '
                     f'font-weight="bold">{_TITLES[kind]}</text>')
    for source, target in graph.edges:
        a, b = graph.nodes[source], graph.nodes[target]
        parts.append(f'<line x1="{a.x + _BOX_W:.0f}" y1="{a.y + _BOX_H / 2:.0f}" '
                     f'x2="{b.x:.0f}" y2="{b.y + _BOX_H / 2:.0f}" stroke="#555" '
                     'marker-end="url(#arrow)"/>')
    for node in graph.nodes.values():
        esc = [html.escape(line) for line in node.lines]
        parts.append(f'<g class="{node.kind}" id="{html.escape(node.id)}">'
                     f'<title>{html.escape(node.tooltip)}</title>'
                     f'<rect x="{node.x:.0f}" y="{node.y:.0f}" width="{_BOX_W}" '
                     f'height="{_BOX_H}" rx="6" fill="{_fill(node)}" stroke="#333"/>'
                     f'<text x="{node.x + 8:.0f}" y="{node.y + 18:.0f}" font-weight="bold">'
                     f'{esc[0]}</text><text x="{node.x + 8:.0f}" y="{node.y + 36:.0f}">'
                     f'{esc[1]}</text></g>')
    parts.append("</svg>")
    return "\n".join(parts)


def to_html(graph: Graph, project: Project) -> str:
    counts = {k: sum(n.kind == k for n in graph.nodes.values()) for k in COLUMNS}
    summary = ", ".join(f"{counts[k]} {_TITLES[k]}" for k in COLUMNS)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>segen lineage"
            f"</title></head>\n<body style=\"font-family:sans-serif\"><h1>segen lineage</h1>"
            f"<p>{html.escape(str(project.root))}: {summary}. Arrows: data version -> run "
            "tagged with it -> model version registered from it; yellow: a version holding "
            f"an alias. Hover a box for its full id.</p>\n{to_svg(graph)}\n</body></html>\n")


def write_png(graph: Graph, path: Path) -> None:
    """The same layout through matplotlib (Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    width, height = graph.size()
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1), xlim=(0, width), ylim=(height, 0))  # y down, as in SVG
    ax.axis("off")
    for i, kind in enumerate(COLUMNS):
        ax.text(20 + i * (_BOX_W + _COL_GAP), 34, _TITLES[kind], fontsize=11, weight="bold")
    for source, target in graph.edges:
        a, b = graph.nodes[source], graph.nodes[target]
        ax.annotate("", xy=(b.x, b.y + _BOX_H / 2), xytext=(a.x + _BOX_W, a.y + _BOX_H / 2),
                    arrowprops={"arrowstyle": "->", "color": "#555"})
    for node in graph.nodes.values():
        ax.add_patch(FancyBboxPatch((node.x, node.y), _BOX_W, _BOX_H, facecolor=_fill(node),
                                    edgecolor="#333", boxstyle="round,pad=0,rounding_size=6"))
        ax.text(node.x + 8, node.y + 18, node.lines[0], fontsize=8.5, weight="bold")
        ax.text(node.x + 8, node.y + 36, node.lines[1], fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)  # atomic: a reader never sees half a PNG


def write_graph(project: Project, out: Path) -> dict[str, Any]:
    """Draw the lineage into out (.html or .png); returns what was drawn."""
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".png"):
        raise ValueError(f"--out {out}: write .html (opens offline) or .png")
    graph = build_graph(project)
    if suffix == ".png":
        write_png(graph, out)
    else:
        write_atomic(out, to_html(graph, project))
    return {"out": str(out), "nodes": {k: sorted(n.id.split(":", 1)[1] for n in
                                                 graph.nodes.values() if n.kind == k)
                                       for k in COLUMNS},
            "edges": len(graph.edges)}
