"""What every ``dssdn-edge`` command shares: one-line errors and the option types, in a module of their own so
the commands can live in several modules (``cli``, ``cli_train``) without importing each other."""

from __future__ import annotations

import functools
import sys

import click

from .errors import DssdnError

SIZES = ["small", "middle", "large", "resnet"]


def friendly_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DssdnError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other tools do
            sys.stderr.close()
            sys.exit(141)
        except OSError as exc:  # disk full, permission denied, ...: the file and the reason, no traceback
            where = exc.filename or "output"
            click.echo(f"error: {where}: {exc.strerror or exc}", err=True)
            sys.exit(1)

    return wrapper


class Finite(click.FloatRange):
    """A float option in its range and finite: ``nan`` passes every comparison and ``inf`` every lower bound,
    so click's range alone lets both through."""

    name = "finite float"

    def convert(self, value, param, ctx):
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv
