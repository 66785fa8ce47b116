"""How every ``mner`` command reports bad input: one line ``error: ...`` on stderr and exit status 2."""

from __future__ import annotations

import functools
import sqlite3

import typer

from mner.data import MnerInputError


def error_exit(err: MnerInputError | str) -> typer.Exit:
    """Print ``error: <err>`` to stderr and return the Exit(2) to raise."""
    typer.echo(f"error: {error_text(err)}", err=True)
    return typer.Exit(2)


def error_text(err: MnerInputError | str) -> str:
    """What went wrong, naming the file by the path the user gave (``runs/my-model: ...``), not by its name
    alone as ``str(err)`` does."""
    if isinstance(err, MnerInputError) and err.path is not None:
        where = err.path if err.line is None else f"{err.path}:{err.line}"
        return f"{where}: {err.reason}"
    return str(err)


def fail(message: str) -> None:
    """Print one clear line to stderr and exit 2 (bad input, not a crash)."""
    raise error_exit(message)


def user_errors(func):
    """Turn MnerInputError (and unreadable files) into ``error: ...`` and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except MnerInputError as err:
            raise error_exit(err) from None
        except OSError as err:
            reason = err.strerror or str(err)
            raise error_exit(f"{err.filename}: {reason}" if err.filename else reason) from None
        except sqlite3.DatabaseError as err:  # a KG or feature cache damaged after it was opened
            raise error_exit(f"a database file is damaged or unreadable ({err})") from None

    return wrapper
