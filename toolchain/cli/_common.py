"""Options every stage shares: --recipe and -o/--out (the run folder)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import click


@dataclass
class State:
    verbose: bool = False


def recipe_option(f):
    return click.option("--recipe", "recipe", default=None, metavar="PATH|NAME",
                        help="Recipe YAML (or a name in recipes/). Default: retinaface_mnet025.")(f)


def _lock_run_folder(ctx, param, value):
    """One fbtool per run folder for the whole command (released when the command's context closes)."""
    from ..runfolder import run_lock

    if value is not None and not ctx.resilient_parsing:
        ctx.with_resource(run_lock(value))  # errors reach the group's one-line handler
    return value


def out_option(f):
    return click.option("-o", "--out", "out", default="runs/default", show_default=True, metavar="DIR",
                        callback=_lock_run_folder,
                        help="Run folder shared by the stages (holds manifest.json).")(f)


def load(recipe):
    from ..recipe import load_recipe

    return load_recipe(recipe)


def success(stage: str, t0: float, detail: str) -> None:
    """Every stage ends with the same line: stage, time, what it produced."""
    click.secho(f"{stage}: done in {time.perf_counter() - t0:.1f} s: {detail}", fg="green")
