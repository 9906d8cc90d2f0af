"""Embedding-view benchmarks: t-SNE of filters, activation maps and 20,000 images, off the render
loop.

    python tools/bench_embed.py [--quick] [--sklearn-20k] [--json OUT.json]

tools/bench.py calls bench_all(quick) and format_embed(results); the parts (each returns a dict of plain
numbers; times are medians over repeats):
  bench_filter_embedding(repeats)   a 20-filter layer (RevaCNN 16-20-20, conv2, built-in digits): the four
                                    vector kinds in torch, then each kind's layout through the embed process,
                                    request -> final result seen by poll(); cold (first layout of a view) and
                                    warm (a refresh).  Target: <= 100 ms.
  bench_activation_maps(repeats)    500 activation maps (conv1 maps of the first images, 32x32 = 1024 values
                                    each) through the process.  Target: <= 1.5 s.
  bench_images(n, layer)            n images (20,000: the built-in digits shifted and noised) by one layer's
                                    activations: vectors in torch, then the layout through the process with
                                    progress and partial layouts, while a 60 Hz loop polls the handle and runs
                                    the ImGui panel (ImPlot scatter of every point, no GL) each frame; reports
                                    the total, the time to the first partial layout, progress messages, and
                                    the loop's frame work p50 / p99 / max (the UI stays at full rate if these
                                    stay far below 16.7 ms).  Target: report.
  compare_engines(sizes, engines)   scikit-learn's Barnes-Hut vs openTSNE on the same inputs, through the same
                                    single-threaded process: why openTSNE is the engine (scikit-learn at
                                    20,000 points only with --sklearn-20k: 3+ minutes).
Targets live here and in docs/BENCHMARKS.md, never in timed tests.  The machine is shared: medians over
repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import numpy as np
from convscope.engine.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]

with contextlib.suppress(ImportError):
    import triton  # noqa: F401  (before anything LLVM-based, as tests/conftest.py explains)

FRAME_S = 1.0 / 60.0


def _model_and_data(seed: int = 0):
    import torch
    from convscope.features.data.datasets import builtin_digits
    from convscope.models.revacnn import Arch, RevaCNN

    torch.set_num_threads(1)
    data = builtin_digits(channels=3)
    net = RevaCNN(Arch(3, 32, (16, 20, 20), 10), torch.Generator().manual_seed(seed))
    return net, data


def _median_ms(values: list[float]) -> float:
    return 1e3 * statistics.median(values)


def _layout_time(handle, kind: str, layer: str, vectors: np.ndarray, warm: bool, timeout: float = 600.0):
    """Seconds from request() to the final result in poll(), and the process's own compute seconds."""
    t0 = time.perf_counter()
    job = handle.request(kind, layer, vectors, warm=warm)
    result = handle.wait(job, timeout)
    return time.perf_counter() - t0, result.seconds


def bench_filter_embedding(repeats: int = 9) -> dict:
    """20 filters of conv2, each kind: vectors (torch) and layout (embed process), cold and warm."""
    from convscope.features.embedding.handle import EmbedHandle
    from convscope.features.embedding.messages import KINDS
    from convscope.features.embedding.vectors import filter_vectors

    net, data = _model_and_data()
    image, label = data.x_val[0], int(data.y_val[0])
    vec_s = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fv = filter_vectors(net, "conv2", image, label)
        vec_s.append(time.perf_counter() - t0)
    out: dict = {"filters": fv.count, "vectors_all_kinds_ms": _median_ms(vec_s), "kinds": {}}
    with EmbedHandle() as handle:
        if not handle.start(60.0):
            raise SystemExit(f"embed process failed: {handle.error}")
        out["engine"] = handle.engine
        for kind in KINDS:
            cold, warm, compute = [], [], []
            for _ in range(repeats):
                handle.forget()
                total, seconds = _layout_time(handle, kind, "conv2", fv[kind], warm=False)
                cold.append(total)
                compute.append(seconds)
                total, _ = _layout_time(handle, kind, "conv2", fv[kind], warm=True)
                warm.append(total)
            out["kinds"][kind] = {
                "dims": int(fv[kind].shape[1]),
                "cold_ms": _median_ms(cold),
                "warm_ms": _median_ms(warm),
                "tsne_compute_ms": _median_ms(compute),
            }
    out["cold_ms_worst_kind"] = max(k["cold_ms"] for k in out["kinds"].values())
    return out


def activation_maps(n: int = 500) -> np.ndarray:
    """n conv1 activation maps (32x32) of the first held-out images, 16 per image."""
    import torch

    net, data = _model_and_data()
    images = data.x_val[: (n + 15) // 16]
    with torch.no_grad():
        maps = net.forward_all(images.float() / 255.0)["conv1"]
    return maps.reshape(-1, maps.shape[-2] * maps.shape[-1])[:n].numpy().copy()


def bench_activation_maps(repeats: int = 5, n: int = 500) -> dict:
    from convscope.features.embedding.handle import EmbedHandle

    maps = activation_maps(n)
    with EmbedHandle() as handle:
        if not handle.start(60.0):
            raise SystemExit(f"embed process failed: {handle.error}")
        cold, compute = [], []
        for _ in range(repeats):
            handle.forget()
            total, seconds = _layout_time(handle, "activations", "conv1", maps, warm=False)
            cold.append(total)
            compute.append(seconds)
        warm = [_layout_time(handle, "activations", "conv1", maps, warm=True)[0] for _ in range(repeats)]
        engine = handle.engine
    return {
        "maps": int(maps.shape[0]),
        "dims": int(maps.shape[1]),
        "engine": engine,
        "cold_s": statistics.median(cold),
        "warm_s": statistics.median(warm),
        "tsne_compute_s": statistics.median(compute),
    }


def many_images(n: int = 20_000, seed: int = 0):
    """n 3x32x32 uint8 images with labels: the built-in digits, shifted by up to 2 px and noised."""
    import torch

    _, data = _model_and_data()
    base = torch.cat([data.x_train, data.x_val])
    labels = torch.cat([data.y_train, data.y_val])
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(base), (n,), generator=g)
    images = base[pick].clone()
    shifts = torch.randint(-2, 3, (n, 2), generator=g)
    for i in range(n):
        images[i] = torch.roll(images[i], shifts=(int(shifts[i, 0]), int(shifts[i, 1])), dims=(1, 2))
    noise = torch.randint(0, 24, images.shape, generator=g, dtype=torch.int16)
    images = (images.to(torch.int16) + noise).clamp_(0, 255).to(torch.uint8)
    return images, labels[pick].numpy(), data.classes


def bench_images(n: int = 20_000, layer: str = "pool2", ui: bool = True) -> dict:
    """n images by `layer`'s activations, with progress, while a 60 Hz loop runs the panel."""
    from convscope.features.embedding.handle import EmbedHandle
    from convscope.features.embedding.messages import IMAGES
    from convscope.features.embedding.vectors import image_vectors

    net, _ = _model_and_data()
    images, labels, classes = many_images(n)
    t0 = time.perf_counter()
    vectors = image_vectors(net, images, layer)
    vectors_s = time.perf_counter() - t0

    backend = state = None
    if ui:
        from convscope.engine.ui.backend import UiBackend
        from convscope.features.embedding.panel import EmbedPanelState, gui_embed
        from imgui_bundle import imgui

        backend = UiBackend()
        state = EmbedPanelState(mode=IMAGES, class_names=tuple(classes))
        state.set_layers([], [layer])

    frame_work, progress_msgs, partials = [], 0, 0
    first_partial = None
    with EmbedHandle() as handle:
        if not handle.start(60.0):
            raise SystemExit(f"embed process failed: {handle.error}")
        t0 = time.perf_counter()
        job = handle.request(IMAGES, layer, vectors, np.arange(n))
        request_s = time.perf_counter() - t0
        next_frame = time.perf_counter()
        last_fraction = -1.0
        final = None
        while final is None:
            start = time.perf_counter()
            result = handle.poll()
            p = handle.progress
            if p is not None and p.fraction != last_fraction:
                progress_msgs += 1
                last_fraction = p.fraction
            if result is not None:
                if result.final:
                    final = result
                else:
                    partials += 1
                    if first_partial is None:
                        first_partial = time.perf_counter() - t0
                if state is not None:
                    state.show(result.ids, result.points, kind=IMAGES, layer=layer, labels=labels[result.ids])
            if state is not None:
                state.set_progress(p.fraction if p else None, p.phase if p else "")
                backend.new_frame((900, 700), (1, 1), FRAME_S)
                imgui.set_next_window_pos((0, 0))
                imgui.set_next_window_size((900, 700))
                imgui.begin("Embedding")
                gui_embed(state)
                imgui.end()
                backend.render()
            frame_work.append(time.perf_counter() - start)
            next_frame += FRAME_S
            time.sleep(max(0.0, next_frame - time.perf_counter()))
            if time.perf_counter() - t0 > 1800:
                raise SystemExit("20k embedding did not finish in 30 minutes")
        total_s = time.perf_counter() - t0
        assert final.job == job
    if backend is not None:
        backend.destroy()
    work_ms = np.array(frame_work) * 1e3
    return {
        "images": n,
        "layer": layer,
        "dims": int(vectors.shape[1]),
        "engine": final.engine,
        "vectors_s": vectors_s,
        "request_ms": 1e3 * request_s,
        "layout_s": total_s,
        "tsne_compute_s": final.seconds,
        "first_partial_s": first_partial,
        "progress_updates": progress_msgs,
        "partial_layouts": partials,
        "ui_frames": len(work_ms),
        "ui_frame_work_p50_ms": float(np.percentile(work_ms, 50)),
        "ui_frame_work_p99_ms": float(np.percentile(work_ms, 99)),
        "ui_frame_work_max_ms": float(work_ms.max()),
    }


def compare_engines(
    sizes: tuple[int, ...] = (500, 20_000), engines=("opentsne", "sklearn"), repeats=3
) -> dict:
    """Cold layout seconds per engine and size, through the single-threaded process (median of repeats;
    one run at 20,000)."""
    from convscope.features.embedding.handle import EmbedConfig, EmbedHandle
    from convscope.features.embedding.vectors import image_vectors

    inputs = {}
    for n in sizes:
        if n <= 1000:
            inputs[n] = activation_maps(n)
        else:
            net, _ = _model_and_data()
            images, _, _ = many_images(n)
            inputs[n] = image_vectors(net, images, "pool2")
    out: dict = {}
    for engine in engines:
        with EmbedHandle(EmbedConfig(engine=engine)) as handle:
            if not handle.start(60.0):
                raise SystemExit(f"embed process ({engine}) failed: {handle.error}")
            for n, x in inputs.items():
                runs = []
                for _ in range(repeats if n <= 1000 else 1):
                    handle.forget()
                    runs.append(
                        _layout_time(handle, "activations", f"bench{n}", x, warm=False, timeout=1800)[1]
                    )
                out.setdefault(engine, {})[str(n)] = statistics.median(runs)
                print(f"  {engine:9s} n={n:6d}: {statistics.median(runs):8.2f} s", flush=True)
    return out


def bench_all(quick: bool = False, sklearn_20k: bool = False) -> dict:
    """Every measurement above; `quick`: fewer repeats, 2,000 images, no engine comparison.  scikit-learn at
    20,000 points takes minutes, so it runs only with `sklearn_20k`."""
    results: dict = {"date": time.strftime("%Y-%m-%d")}
    print("filter embedding, 20 filters (target <= 100 ms) ...", flush=True)
    results["filters"] = bench_filter_embedding(3 if quick else 9)
    print("500 activation maps (target <= 1.5 s) ...", flush=True)
    results["activation_maps"] = bench_activation_maps(2 if quick else 5)
    n = 2_000 if quick else 20_000
    print(f"{n} images (report; UI loop at 60 Hz meanwhile) ...", flush=True)
    results["images"] = bench_images(n)
    if not quick:
        print("engines, cold layouts, one thread ...", flush=True)
        engines = compare_engines((500, 20_000) if sklearn_20k else (500,))
        if not sklearn_20k:
            engines["opentsne"].update(compare_engines((20_000,), engines=("opentsne",))["opentsne"])
        results["engines"] = engines
    return results


def format_embed(results: dict) -> str:
    """The results of bench_all as lines of text."""
    lines = []
    r = results["filters"]
    lines.append(
        f"filter embedding, {r['filters']} filters (target <= 100 ms; engine {r['engine']}): "
        f"vectors of all four kinds {r['vectors_all_kinds_ms']:.1f} ms"
    )
    for kind, k in r["kinds"].items():
        lines.append(
            f"  {kind:21s} {k['dims']:5d} dims: cold {k['cold_ms']:6.1f} ms  warm {k['warm_ms']:6.1f} ms"
            f"  (t-SNE {k['tsne_compute_ms']:.1f} ms)"
        )
    r = results["activation_maps"]
    lines.append(
        f"{r['maps']} activation maps x {r['dims']} (target <= 1.5 s): cold {r['cold_s']:.2f} s  "
        f"warm {r['warm_s']:.2f} s"
    )
    r = results["images"]
    first = r["first_partial_s"] if r["first_partial_s"] is not None else float("nan")
    lines.append(
        f"{r['images']} images by {r['layer']} ({r['dims']} dims): vectors {r['vectors_s']:.1f} s, layout "
        f"{r['layout_s']:.1f} s ({r['engine']}), first partial layout {first:.1f} s, "
        f"{r['progress_updates']} progress updates"
    )
    lines.append(
        f"  UI loop at 60 Hz meanwhile, frame work p50 {r['ui_frame_work_p50_ms']:.2f} ms  "
        f"p99 {r['ui_frame_work_p99_ms']:.2f} ms  max {r['ui_frame_work_max_ms']:.2f} ms"
    )
    for engine, by_n in results.get("engines", {}).items():
        cells = "  ".join(f"n={n}: {sec:.2f} s" for n, sec in by_n.items())
        lines.append(f"  {engine:9s} cold layouts, one thread: {cells}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="OUT.json", help="also write the results here")
    p.add_argument("--quick", action="store_true", help="fewer repeats, 2,000 images, no engine comparison")
    p.add_argument("--sklearn-20k", action="store_true", help="also scikit-learn at 20,000 points (minutes)")
    args = p.parse_args()
    results = bench_all(args.quick, args.sklearn_20k)
    print(format_embed(results))
    if args.json:
        atomic_write(args.json, (json.dumps(results, indent=2) + "\n").encode())  # whole or not at all


if __name__ == "__main__":
    main()
