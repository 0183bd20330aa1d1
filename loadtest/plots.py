"""The report's two figures (matplotlib, PNG): latency percentiles against throughput per target, and
peak throughput per target and variant (with the batched requests against the in-process ceiling)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(results: dict[str, Any], directory: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = {
        name: [s for s in entry["steps"] if s["requests"]]
        for name, entry in results["targets"].items()
        if entry["status"] == "ok" and entry["batch"] == 1
    }
    measured = {name: steps for name, steps in measured.items() if steps}

    figure, axes = plt.subplots(1, 2, figsize=(13, 5), sharex=False)
    for name, steps in measured.items():
        rates = [s["requests_per_s"] for s in steps]
        (line,) = axes[0].plot(rates, [s["p50_ms"] or 0 for s in steps], marker="o", label=name)
        axes[1].plot(rates, [s["p99_ms"] or 0 for s in steps], marker="o", color=line.get_color(), label=name)
    for axis, title in zip(axes, ("p50", "p99"), strict=True):
        axis.set_xlabel("throughput (requests/s)")
        axis.set_ylabel(f"{title} latency (ms, log)")
        axis.set_yscale("log")
        axis.set_title(f"{title} latency against throughput (one point per user step)")
        axis.grid(True, which="both", alpha=0.3)
    if measured:
        axes[1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    latency_png = directory / "latency_vs_throughput.png"
    figure.savefig(latency_png, dpi=110)
    plt.close(figure)

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [4, 1]})
    names = list(measured)
    peaks = [max(s["requests_per_s"] for s in measured[name]) for name in names]
    groups = [results["targets"][name]["group"] for name in names]
    palette = {"baseline": "tab:gray", "modelserver": "tab:blue", "gateway": "tab:green", "v2": "tab:purple"}
    colors = [palette.get(group, "tab:olive") for group in groups]
    left.barh(names, peaks, color=colors)
    for index, value in enumerate(peaks):
        left.text(value, index, f" {value:.0f}", va="center", fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("peak requests/s (one image per request)")
    left.set_title("peak throughput per target and variant")
    batched = results["targets"].get("gateway-grpc-batch64") or {}
    bars = {
        "gateway batch 64": max((s["images_per_s"] for s in batched.get("steps", []) if s["requests"]), default=0.0),
        "in-process": (results.get("ceiling") or {}).get("images_per_s") or 0.0,
    }
    right.bar(list(bars), list(bars.values()), color=["tab:green", "tab:gray"])
    right.set_ylabel("images/s")
    right.set_title("batch 64 vs ceiling")
    figure.tight_layout()
    peak_png = directory / "peak_throughput.png"
    figure.savefig(peak_png, dpi=110)
    plt.close(figure)
    return [latency_png.name, peak_png.name]
