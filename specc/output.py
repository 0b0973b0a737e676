"""Writing output files (generated code, ONNX models, state dicts, formatted specs).

An output replaces a regular file or creates one, and nothing else: a directory,
a FIFO, a device node or a socket at the path is refused, and so is a symbolic
link (except for `specc fmt`, which rewrites the file the link points to and
keeps the link) and any file the command reads (the spec, its imports, the
weights). The new file appears atomically, complete or not at all: its data is
written to an anonymous file (`O_TMPFILE`) that only gets a name once complete,
so a killed write leaves nothing behind; where that is unavailable, a hidden
temporary file is used and removed on failure, on Ctrl-C and on SIGTERM. A new
file gets mode 0666 & ~umask, like any file a program creates; a replaced file
keeps its permission bits. Every failure is `SpeccError("E0002")` (exit status 2).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
import threading
from pathlib import Path
from typing import Iterator, Mapping

from .diagnostics import SpeccError, file_kind
from .escape import printable

OUTPUT_ERROR = "E0002"


def write_atomic(path: Path, data: bytes, inputs: Mapping[Path, str] | None = None,
                 follow_symlink: bool = False) -> Path:
    """Write `data` to `path` atomically, refusing to replace anything but a regular file.

    `inputs` maps the files the command reads to what they are ("the spec", "the --weights file"):
    writing over one is refused. With `follow_symlink`, a symbolic link at `path` is kept and the
    file it points to is rewritten. Returns the path of the file written.
    """
    shown = printable(str(path))

    def fail(reason: str, help: str | None = None) -> SpeccError:
        return SpeccError(OUTPUT_ERROR, f"cannot write {shown}: {reason}", None, help=help)

    target, existing = _target(path, follow_symlink, fail)
    if existing is not None:
        for other, what in (inputs or {}).items():
            try:
                if os.path.samefile(other, target):
                    raise fail(f"it is {what}, which this command reads; refusing to overwrite it",
                               "choose another output path with -o")
            except OSError:
                continue  # an input that is gone is not the output
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot create its directory: {_reason(exc)}") from None
    keep_mode = stat.S_IMODE(existing.st_mode) if existing is not None else None
    try:
        _write(target, data, keep_mode)
    except OSError as exc:
        raise fail(_reason(exc)) from None
    return target


def _target(path: Path, follow_symlink: bool, fail) -> tuple[Path, os.stat_result | None]:
    """The file to write (the link's target when following a symlink) and its stat, if it exists."""
    try:
        info: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise fail(_reason(exc)) from None
    target = path
    if info is not None and stat.S_ISLNK(info.st_mode):
        if not follow_symlink:
            raise fail("it is a symbolic link; refusing to replace it",
                       "write to the file it points to, or remove the link first")
        target = Path(os.path.realpath(path))
        try:
            info = os.stat(target)
        except FileNotFoundError:
            info = None  # a dangling link: create the file it names
        except OSError as exc:
            raise fail(_reason(exc)) from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise fail(f"it {file_kind(info.st_mode)}; refusing to replace it")
    return target, info


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _write(target: Path, data: bytes, keep_mode: int | None) -> None:
    with _sigterm_raises():
        if not _write_anonymous(target, data, keep_mode):
            _write_named(target, data, keep_mode)


_FLAGS = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)


def _write_anonymous(target: Path, data: bytes, keep_mode: int | None) -> bool:
    """Write an unnamed file (O_TMPFILE) and only then link it in, via /proc/self/fd: a write killed at
    any point before leaves nothing. False where that is unavailable (not Linux, or not this file system)."""
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False  # the fallback reports the problem
    try:
        try:
            fd = os.open(target.parent, _FLAGS | os.O_TMPFILE, 0o666)  # type: ignore[attr-defined]
        except OSError:
            return False
        try:
            _fill(fd, data, keep_mode)
            proc = f"/proc/self/fd/{fd}"
            try:  # a linkat() that follows the /proc link (dst_dir_fd makes os.link call linkat)
                os.link(proc, target.name, dst_dir_fd=directory, follow_symlinks=True)
                return True
            except FileExistsError:
                pass
            except OSError:
                return False
            tmp = _temp_name(target)  # the name is taken: link under a temporary name, then rename over it
            os.link(proc, tmp.name, dst_dir_fd=directory, follow_symlinks=True)
            try:
                os.replace(tmp.name, target.name, src_dir_fd=directory, dst_dir_fd=directory)
            except BaseException:
                os.unlink(tmp.name, dir_fd=directory)
                raise
            return True
        finally:
            os.close(fd)
    finally:
        os.close(directory)


def _write_named(target: Path, data: bytes, keep_mode: int | None) -> None:
    """Write a hidden temporary file beside `target` and rename it over `target`; removed on any failure."""
    tmp = _temp_name(target)
    fd = os.open(tmp, _FLAGS | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            _fill(fd, data, keep_mode)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fill(fd: int, data: bytes, keep_mode: int | None) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if keep_mode is not None:
        os.fchmod(fd, keep_mode)
    os.fsync(fd)  # a full disk may only show here


def _temp_name(target: Path) -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises (as Ctrl-C does), so the block's cleanup removes its temporary
    file before the process ends instead of the process dying with the file left behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
