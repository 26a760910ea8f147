"""Progress bars of long work: text bars in the log, never in a notebook's output.

In a Jupyter kernel (papermill, the book's build) ``sys.stderr`` is forwarded into the notebook, and so is
anything written to file descriptor 2; the stream's ``fileno()`` is a copy of the kernel process's own
stderr, which is papermill's log. :class:`tqdm` writes there. Outside a kernel it is tqdm's text bar on
``sys.stderr``.
"""

from __future__ import annotations

import io
import sys

from tqdm.std import tqdm as _text_tqdm

_LOG: dict = {}


def log_stream():
    """Where a bar goes: the kernel process's stderr inside a Jupyter kernel, ``sys.stderr`` elsewhere; None
    where a kernel has no such stream (the bar is then not shown)."""
    err = sys.stderr
    if not type(err).__module__.startswith("ipykernel"):
        return err
    try:
        fd = err.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    if fd not in _LOG:
        _LOG[fd] = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), write_through=True)
    return _LOG[fd]


class tqdm(_text_tqdm):
    """tqdm's text bar written to :func:`log_stream` unless given a ``file``."""

    def __init__(self, *args, file=None, **kwargs):
        if file is None:
            file = log_stream()
            if file is None:
                kwargs["disable"] = True
        super().__init__(*args, file=file, **kwargs)
