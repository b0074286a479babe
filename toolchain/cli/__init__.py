"""The fbtool command line. The only package that imports click.

Each command parses options and calls one library function; FbtoolError, and the environment and
file-format failures errors.as_fbtool_error knows (OSError, UnicodeError, protobuf, onnx, onnxruntime,
PyAV), become a one-line `Error: ...` with a hint (traceback with -v). SIGTERM is raised like Ctrl-C
(errors.Terminated) so every cleanup path runs. Heavy modules are imported inside the commands,
so `fbtool --help` works with no GPU, no TensorRT and no torch import.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

import click

from ..errors import Terminated, as_fbtool_error
from ._common import State

# One module per stage; each defines `command` (a click command or group).
COMMAND_MODULES = ["run", "export", "detect", "validate", "deepstream", "build_parser", "build_engine", "doctor", "surgery", "calibrate", "blur", "bench"]


def _on_sigterm(signum, frame):
    raise Terminated()


def install_signal_handlers() -> None:
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


class FbtoolGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Terminated:
            click.secho("Error: terminated (SIGTERM); temporary files were removed", fg="red", err=True)
            # Every cleanup has run while the exception unwound. Leave without the interpreter's
            # shutdown: worker threads may still sit inside onnxruntime or FFmpeg, and tearing their
            # C++ objects down under them aborts the process ("terminate called without an active
            # exception", exit -6 instead of 143).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(143)
        except Exception as exc:
            err = as_fbtool_error(exc)
            if err is None:
                raise
            if ctx.obj is not None and ctx.obj.verbose:
                import traceback

                traceback.print_exc()
            click.secho(f"Error: {err}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=FbtoolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and debug output.")
@click.version_option(package_name="fbtool")
@click.pass_context
def cli(ctx, verbose):
    """fbtool: PyTorch face detector -> ONNX -> TensorRT -> DeepStream face blur, proven at every step."""
    ctx.obj = State(verbose=verbose)
    install_signal_handlers()


for _name in COMMAND_MODULES:
    cli.add_command(importlib.import_module(f"{__name__}.{_name}").command)


def main(argv=None):
    cli.main(args=argv, prog_name="fbtool")
