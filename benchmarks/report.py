"""The report as Markdown (for people) and JSON (for machines)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _share(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f} %"


def _header(report: dict[str, Any]) -> list[str]:
    m, v = report["machine"], report["versions"]
    ceiling = report["ceiling"]
    flops = report["model"]["flops_per_example"]
    lines = [
        f"# mnist-jax benchmark ({report['plan']}, {report['created']}, "
        f"{report['seconds']} s)",
        "",
        f"- device: {m['backend']} {m['device_kind']} ({', '.join(m['devices'])}); "
        f"{m['cpu_count']} CPUs, {m['processor']}, {m['platform']}",
        "- versions: " + ", ".join(f"{k} {val or 'absent'}" for k, val in v.items()),
        f"- data: {report['data']['source']}, {report['data']['examples']:,} examples",
        f"- model {'-'.join(map(str, report['model']['sizes']))}: "
        f"{flops['train']:,} matmul FLOPs per training example "
        f"(forward {flops['forward']:,}, weight grads {flops['weight_grads']:,}, "
        f"input grads {flops['input_grads']:,}; 6 x MACs would say "
        f"{flops['train_6_macs']:,}), {flops['inference']:,} per inference",
    ]
    if ceiling:
        peak = ceiling["matmul_flops_per_s"]
        blas = ceiling["numpy_matmul_flops_per_s"]
        same = ", ".join(
            f"b{b} {r['max'] / 1e9:.1f}"
            for b, r in ceiling["same_shape_flops_per_s"].items()
        )
        lines.append(
            "- ceiling (best of repeats, the better of the run's start and end): "
            f"float32 matmul {ceiling['matmul_n']}^2 "
            f"{peak['max'] / 1e9:.1f} GFLOP/s (median {peak['median'] / 1e9:.1f}); "
            f"a training step's own matmuls alone (GFLOP/s): {same}; for "
            f"comparison NumPy's BLAS: {blas['max'] / 1e9:.1f} GFLOP/s"
        )
    return lines


def _results(report: dict[str, Any]) -> list[str]:
    lines = [
        "| system | measure | batch | aug | median | min-max | unit "
        "| GFLOP/s | of peak | of same-shape |",
        "|---|---|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        aug = {True: "yes", False: "no", None: ""}[r["augment"]]
        spread = f"{_number(r['min'])}-{_number(r['max'])}" if r["repeats"] > 1 else ""
        gflops = r.get("gflop_per_s")
        lines.append(
            f"| {r['system']} | {r['measure']} | {r['batch'] or ''} | {aug} "
            f"| {_number(r['median'])} | {spread} | {r['unit']} "
            f"| {'' if gflops is None else f'{gflops:.1f}'} "
            f"| {_share(r.get('of_matmul_peak'))} | {_share(r.get('of_same_shape'))} |"
        )
    return lines


def _targets(report: dict[str, Any]) -> list[str]:
    lines = ["| target | measured | goal | met |", "|---|---:|---:|---|"]
    for t in report["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value']:.2f}"
        goal = ("≥ " if t["at_least"] else "≤ ") + f"{t['goal']:g}"
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {value} | {goal} | {met} |")
    return lines


def _memory(report: dict[str, Any]) -> list[str]:
    lines = [
        "| section | peak host RSS | device peak | seconds |",
        "|---|---:|---:|---:|",
    ]
    for name, m in report["memory"].items():
        rss = f"{m['peak_rss_bytes'] / 2**20:,.0f} MiB"
        if not m["peak_rss_is_per_section"]:
            rss += " (process)"
        device = m["device"] or {}
        peak = device.get("peak_bytes_in_use")
        dev = "not reported" if peak is None else f"{peak / 2**20:,.0f} MiB"
        lines.append(f"| {name} | {rss} | {dev} | {m['seconds']} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """Returns the whole report as Markdown: header, figures, targets, memory."""
    lines = _header(report)
    lines += ["", "## Figures (median of repeats, min-max beside it)", ""]
    lines += _results(report)
    lines += ["", "## Targets (ratios of medians)", ""]
    lines += _targets(report)
    lines += ["", "## Memory", ""]
    lines += _memory(report)
    if report["skipped"]:
        lines += ["", "## Left out", ""]
        lines += [f"- {s['system']}: {s['why']}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"


def write_json(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Writes ``report`` as indented JSON; returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
