from __future__ import annotations

import time

import click

from ._common import load, out_option, recipe_option, success


@click.command("surgery")
@recipe_option
@out_option
@click.option("--onnx", type=click.Path(), default=None,
              help="Input ONNX (default: the run folder's export; with --lint-only, its surgered graph if any).")
@click.option("--passes", default=None, metavar="A,B,...",
              help="Comma-separated pass list (default: the recipe's surgery.passes).")
@click.option("--decode/--no-decode", default=None,
              help="Append decode-in-graph (det_boxes/det_scores/det_landmarks). Default: the recipe's surgery.decode.")
@click.option("--top-k", type=int, default=None, help="Decoded layout: keep the K best anchors (0 = all).")
@click.option("--score-prefilter", type=float, default=None, help="Decoded layout: zero scores <= this (0 = off).")
@click.option("--name", default="model.surgery.onnx", show_default=True, help="Output file name in the run folder.")
@click.option("--lint-only", is_flag=True, help="Only run the TensorRT 10 compatibility lint and report.")
@click.option("--no-lint", is_flag=True, help="Write the graph even if the TensorRT lint finds problems.")
@click.option("--no-check", is_flag=True, help="Skip the onnxruntime parity check on real frames.")
def command(recipe, out, onnx, passes, decode, top_k, score_prefilter, name, lint_only, no_lint, no_check):
    """Graph surgery for TensorRT/DeepStream: sanitize, hygiene, optional decode, stable names; then lint."""
    import dataclasses

    t0 = time.perf_counter()
    if lint_only:
        from ..surgery.stage import lint_only as run_lint

        path, report = run_lint(out, onnx)
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(report.ops.items()))
        click.echo(f"  {path}: opset {report.opset}, {sum(report.ops.values())} nodes ({ops})")
        for f in report.findings:
            click.echo(f"  {f.severity}: {f}")
        report.check(str(path))
        success("surgery --lint-only", t0, f"{path}: TensorRT 10 lint clean")
        return

    from ..surgery.stage import surgery

    r = load(recipe)
    changes = {k: v for k, v in {"decode": decode, "top_k": top_k, "score_prefilter": score_prefilter}.items()
               if v is not None}
    if passes:
        changes["passes"] = tuple(p.strip() for p in passes.split(",") if p.strip())
        if "decode" in changes["passes"] and decode is None:
            changes["decode"] = True  # naming the pass is asking for it
    settings = dataclasses.replace(r.surgery, **changes)
    if changes:  # the CLI's values go through the recipe's own validation
        from ..recipe import recipe_from_dict

        d = r.to_dict()
        d["surgery"] = dataclasses.asdict(settings)
        recipe_from_dict(d, source=r.source)
    info = surgery(r, out, onnx=onnx, settings=settings, lint=not no_lint, check=not no_check, name=name)
    show(info, out, name, t0)


def show(info: dict, out, name: str, t0: float) -> None:
    for row in info["per_pass"]:
        click.echo(f"  pass {row['pass']:<12} nodes {row['nodes_before']:>4} -> {row['nodes_after']:<4} "
                   f"({row['seconds']:.2f} s)")
    for out_name, err in (info.get("parity") or {}).get("max_abs", {}).items():
        click.echo(f"  parity {out_name:<14} max abs {err:.2e}")
    faces = (info.get("parity") or {}).get("faces")
    if faces:
        click.echo(f"  faces: reference {faces['reference']}, surgered graph {faces['surgered']}, "
                   f"max box error {faces['max_box_px']:.2e} px")
    lint_state = "lint clean" if info["lint"]["ok"] else f"lint: {len(info['lint']['errors'])} finding(s)"
    success("surgery", t0, f"{out}/{name} ({info['output_layout']} layout, nodes {info['nodes_before']} -> "
            f"{info['nodes_after']}, {lint_state})")
