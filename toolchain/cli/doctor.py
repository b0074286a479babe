from __future__ import annotations

import click

from ..errors import FbtoolError


@click.command("doctor")
@click.option("--require", "require", multiple=True, metavar="STAGE",
              help="Exit 1 unless this stage can run here (repeatable, or comma-separated).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.argument("stages", nargs=-1, metavar="[STAGE]...")
def command(require, as_json, stages):
    """What is usable on this machine, and why not.

    `fbtool doctor --require build-engine deepstream` exits 1 unless both stages can run here
    (stages given as arguments are required too).
    """
    import json

    from ..doctor import JOBS, all_stages, diagnose, run_stages, stage_status

    STAGES = all_stages()
    wanted = [s.strip() for r in (*require, *stages) for s in r.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise FbtoolError(f"doctor knows no stage {unknown[0]!r}", f"choose from {', '.join(STAGES)}")
    checks = diagnose()
    if as_json:
        click.echo(json.dumps({"checks": [c.to_dict() for c in checks],
                               "stages": {s: stage_status(s, checks)[0] for s in STAGES},
                               "why": {s: stage_status(s, checks)[1] for s in STAGES}}, indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark = click.style("ok  ", fg="green") if c.ok else click.style("no  ", fg="yellow")
            click.echo(f"{mark}{c.name:<{width}}  {c.detail}")
        sw = max(len(s) for s in STAGES)
        for title, names in (("`fbtool run` on this machine (default options), stage by stage:", run_stages()),
                             ("other jobs:", list(JOBS))):
            click.echo(f"\n{title}")
            for s in names:
                ok, why = stage_status(s, checks)
                click.echo(f"{'ok  ' if ok else 'no  '}{s:<{sw}}  {why}")
    missing = []
    for s in wanted:
        ok, why = stage_status(s, checks)
        if not ok:
            missing.append(f"{s} ({why})")
    if missing:
        click.secho(f"doctor: cannot run here: {'; '.join(missing)}", fg="red", err=True)
        raise click.exceptions.Exit(1)
