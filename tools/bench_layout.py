"""Layout time of traced networks: torchvision's ResNet-18 (num_classes=10) at 3x224x224 (about 3.6
million nodes with its input; issue target: trace + graph + layout <= 2 s) and the shipped LeNet.

    python tools/bench_layout.py [--repeats N]

Also a section of tools/bench.py (`--only layout`).  The trace is timed once (it is the worker's
job, measured in full there); the layout is the median of `repeats` runs of build_layout on the
traced Dag, as the render process runs it on every model load.
"""

from __future__ import annotations

import argparse
import statistics
import time


def _time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_layout(repeats: int = 5) -> list[dict]:
    import torch
    from convscope.engine.graph.layout import build_layout
    from convscope.models.nets import build
    from convscope.models.trace import trace

    torch.set_num_threads(1)
    rows = []
    cases = [("lenet", lambda: build("lenet"), (1, 28, 28))]
    try:
        import torchvision

        cases.append(("resnet18 224", lambda: torchvision.models.resnet18(num_classes=10), (3, 224, 224)))
    except ImportError:
        pass
    for name, make, shape in cases:
        model = make()
        t0 = time.perf_counter()
        dag = trace(model, shape).dag
        trace_s = time.perf_counter() - t0
        layout_s, lay = _time(lambda dag=dag: build_layout(dag), repeats)
        lo, hi = lay.bounds
        rows.append(
            {
                "model": name,
                "nodes": dag.total_nodes,
                "layers": len(dag.layers),
                "levels": int(lay.levels.max()) + 1,
                "columns": len(lay.links) + 1,
                "arcs": len(lay.arcs),
                "trace_s": trace_s,
                "layout_s": layout_s,
                "total_s": trace_s + layout_s,
                "extent": [float(v) for v in hi - lo],
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    out = ["| model | nodes | layers | levels | columns | arcs | trace s | layout s | trace + layout s |"]
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        out.append(
            f"| {r['model']} | {r['nodes']:,} | {r['layers']} | {r['levels']} | {r['columns']} | {r['arcs']} "
            f"| {r['trace_s']:.2f} | {r['layout_s']:.3f} | {r['total_s']:.2f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    print(format_table(bench_layout(p.parse_args().repeats)))
