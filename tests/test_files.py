"""What specc reads and writes: only regular files inside the project, never echoing a file that is
not a spec, atomic outputs that never replace what they must not, and the CLI's exit codes.

Most commands run in-process (typer's CliRunner); anything that could block on a FIFO or must be
killed runs in a subprocess with a timeout, so a regression fails the test instead of hanging it.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specc import limits
from specc.cli import app
from specc.compiler import load_project
from specc.constraints.files import load_constraints
from specc.diagnostics import SourceFile, Span, SpeccError, load_source, render
from specc.output import write_atomic

MODEL = "model {name}() {{\n    input x: f32[B, 4]\n    output y = relu(x)\n}}\n"
SECRET = "TOPSECRET-9f2c"


@pytest.fixture(autouse=True)
def fresh_limits(monkeypatch):
    """`--limit` sets process-wide overrides; each test starts from none."""
    monkeypatch.setattr(limits, "_overrides", {})


def cli(*args: str, cwd: Path | None = None):
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        os.chdir(old)


def cli_process(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "specc.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def spec(path: Path, text: str | None = None, name: str = "m") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else MODEL.format(name=name))
    return path


def importing(path: Path, target: str) -> Path:
    return spec(path, f'import "{target}"\n' + MODEL.format(name="m"))


# ------------------------------------------------------------------ reading


_READ_ALL = """
import sys
from specc.compiler import load_project
from specc.diagnostics import SpeccError
for path in sys.argv[1:]:
    try:
        load_project(path)
        print("read", path)
    except SpeccError as err:
        print(err.code, err.message)
"""


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "pipe.nnspec"
    os.mkfifo(fifo)
    result = cli_process("check", str(fifo), timeout=30)  # a blocking open would time out here
    assert result.returncode == 2 and "is a FIFO (named pipe)" in result.stderr, result.stderr
    result = cli("check", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.stderr
    paths = ["/dev/zero", str(importing(tmp_path / "m.nnspec", "pipe.nnspec"))]
    out = subprocess.run([sys.executable, "-c", _READ_ALL, *paths], capture_output=True, text=True,
                         timeout=30).stdout.splitlines()
    assert out[0].startswith("E0001") and out[0].endswith("/dev/zero: is a character device")
    assert out[1].startswith("E0502") and out[1].endswith("pipe.nnspec: is a FIFO (named pipe)")


def test_missing_and_unreadable_files_say_so(tmp_path):
    with pytest.raises(SpeccError, match="no such file") as info:
        load_source(tmp_path / "nope.nnspec")
    assert info.value.code == "E0001"


def test_non_utf8_is_reported_with_the_byte_and_line(tmp_path):
    path = tmp_path / "m.nnspec"
    path.write_bytes(b"model m() {\n    input x: f32[B, 4]\n  \xff" + SECRET.encode() + b"\n}\n")
    result = cli("check", str(path))
    assert result.exit_code == 2
    assert "not UTF-8 text (invalid byte 0xff at line 3)" in result.stderr and SECRET not in result.stderr


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "m.nnspec"
    path.write_bytes(b"\xef\xbb\xbf" + MODEL.format(name="m").encode())
    assert load_source(path).text.startswith("model m()")
    assert cli("check", str(path)).exit_code == 0


def test_file_size_limit(tmp_path):
    path = spec(tmp_path / "m.nnspec")
    result = cli("--limit", "file_bytes=20", "check", str(path))
    assert result.exit_code == 1 and "error[E0010]" in result.stderr and "file_bytes" in result.stderr
    assert cli("--limit", "file_bytes=2000", "check", str(path)).exit_code == 0


# ------------------------------------------------------------------ imports


def test_imports_outside_the_project_are_refused_without_echoing_them(tmp_path):
    secret = tmp_path / "secret.nnspec"
    secret.write_text(SECRET + "\n")
    project = tmp_path / "project"
    for written in (str(secret), "../secret.nnspec", "/etc/passwd"):
        with pytest.raises(SpeccError) as info:
            load_project(importing(project / "m.nnspec", written))
        err = info.value
        assert err.code == "E0502" and "outside the project" in err.message, err.message
        assert (err.span.line, err.span.col, err.span.end_col) == (1, 8, 8 + len(written) + 2)  # the string
        assert SECRET not in render(err) and "root:" not in render(err)
    (project / "link.nnspec").symlink_to(secret)  # symlinks are resolved before the containment check
    with pytest.raises(SpeccError, match="outside the project"):
        load_project(importing(project / "m.nnspec", "link.nnspec"))
    result = cli("check", str(importing(project / "m.nnspec", "../secret.nnspec")))
    assert result.exit_code == 2 and SECRET not in result.stderr


def test_imports_must_be_nnspec_files(tmp_path):
    spec(tmp_path / "lib.txt", "block b(x) {\n    return x\n}\n")
    with pytest.raises(SpeccError, match="is not a .nnspec file") as info:
        load_project(importing(tmp_path / "m.nnspec", "lib.txt"))
    assert info.value.code == "E0502"


def test_include_directories_are_searched_and_allowed(tmp_path):
    spec(tmp_path / "inc" / "lib.nnspec", "block b(x) {\n    return relu(x)\n}\n")
    main = spec(tmp_path / "project" / "m.nnspec",
                'import "lib.nnspec"\nmodel m() {\n    input x: f32[B, 4]\n    output y = b(x)\n}\n')
    assert cli("check", str(main)).exit_code == 2
    result = cli("check", "-I", str(tmp_path / "inc"), str(main))
    assert result.exit_code == 0, result.stderr
    assert cli("check", "--include", str(tmp_path / "nowhere"), str(main)).exit_code == 2
    # an include directory also allows imports from it by a relative path
    importing(main, "../inc/lib.nnspec")
    with pytest.raises(SpeccError, match="outside the project"):
        load_project(main)
    assert "b" in load_project(main, include=[tmp_path / "inc"]).program.definitions


def test_a_long_import_chain_is_not_a_recursion(tmp_path, monkeypatch):
    n = 1100  # deeper than Python's default recursion limit
    for i in range(n):
        body = f'import "f{i + 1}.nnspec"\n' if i + 1 < n else ""
        (tmp_path / f"f{i}.nnspec").write_text(body + f"block b{i}(x) {{\n    return x\n}}\n")
    monkeypatch.setattr(limits, "_overrides", {"files": 5000})
    started = time.monotonic()
    loaded = load_project(tmp_path / "f0.nnspec")
    assert len(loaded.files) == n and len(loaded.program.definitions) == n
    assert time.monotonic() - started < 30
    monkeypatch.setattr(limits, "_overrides", {"files": 10})
    with pytest.raises(SpeccError) as info:
        load_project(tmp_path / "f0.nnspec")
    err = info.value
    assert err.code == "E0010" and "files" in err.help and err.span.path.endswith("f9.nnspec")


# ------------------------------------------------------------------ rules files


RULES_SPEC = """model m() {{
    input x: f32[B, 2]
    columns (income, debt) = x
    output y = constrain(x, file="{file}") {{}}
}}
"""


def test_rules_files_obey_the_same_policy(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text(SECRET + " >= 1\n")
    project = tmp_path / "project"
    for written in (str(outside), "../secret.txt", "/etc/passwd"):
        result = cli("check", str(spec(project / "m.nnspec", RULES_SPEC.format(file=written))))
        assert result.exit_code == 2 and "error[E0708]" in result.stderr and "outside" in result.stderr
        assert SECRET not in result.stderr and "root:" not in result.stderr
        assert "m.nnspec:4:" in result.stderr  # located at the constrain call
    os.mkfifo(project / "pipe.txt")
    code = ("import sys\nfrom specc.constraints.files import load_constraints\nfrom specc.diagnostics import SpeccError\n"
            "try:\n    load_constraints(sys.argv[1], ['a'])\nexcept SpeccError as err:\n    print(err.code, err.message)")
    result = subprocess.run([sys.executable, "-c", code, str(project / "pipe.txt")], capture_output=True,
                            text=True, timeout=30)  # a blocking open would time out here
    assert result.stdout.startswith("E0708") and "is a FIFO" in result.stdout, result.stderr


def test_a_file_that_is_not_rules_is_not_quoted(tmp_path):
    env = tmp_path / ".env"
    env.write_text(f"API_KEY={SECRET}\n")
    with pytest.raises(SpeccError) as info:
        load_constraints(env, ("income", "debt"), within=tmp_path)
    shown = render(info.value)
    assert SECRET not in shown and "API_KEY" not in shown and info.value.span.line == 1
    rules = tmp_path / "rules.txt"
    rules.write_text("debt <= income\ndebt <= salary\n")  # a rules file with a mistake: quoted
    with pytest.raises(SpeccError) as info:
        load_constraints(rules, ("income", "debt"), within=tmp_path)
    assert "2 | debt <= salary" in render(info.value)


# ------------------------------------------------------------------ rendering


def test_control_characters_are_not_echoed_raw(tmp_path):
    text = "model m() {\n    input x: f32[B, 4]\n    output y = \x1b[31mrelu(x)\n}\n"
    path = spec(tmp_path / "evil\x1b[2J.nnspec", text)
    result = cli("check", str(path))
    assert result.exit_code == 1 and "\x1b" not in result.stderr and "\\x1b" in result.stderr
    source = SourceFile("a\x07.nnspec", "x = \x1b[31m + \tb\n")
    col = source.text.index("b") + 1
    shown = render(SpeccError("E0100", "bad \x1b[0m", Span(source, 1, col, 1, col + 1)))
    assert all(c == "\n" or c == "\t" or c >= " " for c in shown)
    line, caret = shown.splitlines()[2:4]
    assert line.rindex("b") == caret.index("^")  # the caret follows the escaped text


# ------------------------------------------------------------------ outputs


def test_outputs_never_replace_inputs_or_special_files(tmp_path):
    main = spec(tmp_path / "m.nnspec")
    lib = spec(tmp_path / "lib.nnspec", "block b(x) {\n    return x\n}\n")
    importing(main, "lib.nnspec")
    before = main.read_bytes(), lib.read_bytes()
    (tmp_path / "link.py").symlink_to(tmp_path / "target.py")
    (tmp_path / "dir").mkdir()
    for out, why in [(main, "it is the spec"), (lib, "a file the spec imports"), (tmp_path / "dir", "is a directory"),
                     (tmp_path / "link.py", "symbolic link"), (Path("/dev/zero"), "character device"),
                     (tmp_path / "m.nnspec" / "x.py", "not a directory")]:
        result = cli("compile", str(main), "-o", str(out))
        assert result.exit_code == 2 and why in result.stderr and "internal" not in result.stderr, result.stderr
    assert (main.read_bytes(), lib.read_bytes()) == before
    assert not (tmp_path / "target.py").exists()
    os.mkfifo(tmp_path / "pipe.py")
    with pytest.raises(SpeccError, match="it is a FIFO"):
        write_atomic(tmp_path / "pipe.py", b"x")  # never opened, so this cannot block
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe.py").st_mode)


def test_weights_must_be_a_regular_file(tmp_path):
    result = cli("compile", str(spec(tmp_path / "m.nnspec")), "-t", "onnx", "--weights", str(tmp_path),
                 "-o", str(tmp_path / "m.onnx"))
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_outputs_get_the_umask_mode_and_replacements_keep_theirs(tmp_path):
    out = tmp_path / "sub" / "out.py"
    old = os.umask(0o027)
    try:
        assert write_atomic(out, b"a") == out
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    os.chmod(out, 0o604)
    write_atomic(out, b"b")
    assert out.read_bytes() == b"b" and stat.S_IMODE(os.stat(out).st_mode) == 0o604
    assert os.listdir(out.parent) == ["out.py"]


def test_fmt_rewrites_a_symlinks_target_and_keeps_the_link(tmp_path):
    real = spec(tmp_path / "real.nnspec", "model  m() {\n    input x: f32[B, 4]\n    output y = relu(x)\n}\n")
    link = tmp_path / "link.nnspec"
    link.symlink_to(real.name)
    assert cli("fmt", str(link)).exit_code == 0
    assert link.is_symlink() and real.read_text().startswith("model m() {")


@pytest.mark.parametrize("named", [True, False])
def test_write_failures_are_file_errors_and_leave_nothing(tmp_path, monkeypatch, named):
    import specc.output as output

    if named:  # the fallback without O_TMPFILE
        monkeypatch.setattr(output, "_write_anonymous", lambda *args: False)

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output.os, "write", full)
    (tmp_path / "out.py").write_bytes(b"old")
    with pytest.raises(SpeccError) as info:
        write_atomic(tmp_path / "out.py", b"new")
    assert info.value.code == "E0002" and "no space left on device" in info.value.message
    assert os.listdir(tmp_path) == ["out.py"] and (tmp_path / "out.py").read_bytes() == b"old"


_KILLED = """
import os, signal, sys
from pathlib import Path
import specc.output as output
if sys.argv[2] == "named":
    output._write_anonymous = lambda *args: False
real = os.write
def write(fd, data):
    os.kill(os.getpid(), signal.SIGTERM)  # killed in the middle of writing
    return real(fd, data)
output.os.write = write
output.write_atomic(Path(sys.argv[1]) / "out.py", b"x" * 100000)
"""


@pytest.mark.parametrize("mode", ["anonymous", "named"])
def test_a_killed_write_leaves_no_temporary_file(tmp_path, mode):
    result = subprocess.run([sys.executable, "-c", _KILLED, str(tmp_path), mode], capture_output=True, timeout=60)
    assert result.returncode in (143, -15)
    assert os.listdir(tmp_path) == []


def test_a_module_named_like_the_standard_library_is_refused_by_default(tmp_path):
    path = spec(tmp_path / "t.nnspec", name="typing")
    result = cli("compile", str(path), cwd=tmp_path)
    assert result.exit_code == 2 and "shadows" in result.stderr and "-o" in result.stderr
    assert not (tmp_path / "typing.py").exists()
    result = cli("compile", str(path), "-o", str(tmp_path / "typing.py"))  # explicit: a warning
    assert result.exit_code == 0 and "warning" in result.stderr and (tmp_path / "typing.py").exists()


# ------------------------------------------------------------------ options and exit codes


def test_limit_option(tmp_path):
    path = spec(tmp_path / "m.nnspec")
    for bad in ("nodes", "nodes=x", "bogus=3", "nodes=-1"):
        result = cli("--limit", bad, "check", str(path))
        assert result.exit_code == 2 and "--limit" in result.stderr, (bad, result.stderr)
    result = cli("--limit", "nodes=100_000", "--limit", "files=3", "check", str(path))
    assert result.exit_code == 0, result.stderr
    assert limits.value("nodes") == 100_000 and limits.value("files") == 3


def test_exit_codes(tmp_path):
    assert cli("check", str(spec(tmp_path / "ok.nnspec"))).exit_code == 0
    assert cli("check", str(spec(tmp_path / "bad.nnspec", "model m( {\n"))).exit_code == 1
    assert cli("check", str(tmp_path / "missing.nnspec")).exit_code == 2
    assert cli("check", str(importing(tmp_path / "imp.nnspec", "missing.nnspec"))).exit_code == 2
    result = cli("check", str(spec(tmp_path / "r.nnspec", RULES_SPEC.format(file="missing.txt"))))
    assert result.exit_code == 2 and "no such file" in result.stderr
    assert cli("compile", str(tmp_path / "ok.nnspec"), "--bogus").exit_code == 2
    assert cli("check", str(tmp_path / "ok.nnspec"), "--model", "nope").exit_code == 2  # check has no --model
    result = cli("ir", str(tmp_path / "ok.nnspec"), "--model", "nope")
    assert result.exit_code == 2 and "no model named `nope`" in result.stderr


def test_check_loads_the_file_once(tmp_path, monkeypatch):
    import specc.compiler as compiler

    path = spec(tmp_path / "many.nnspec", "".join(MODEL.format(name=f"m{i}") for i in range(40)))
    calls = []
    real = compiler.parse
    monkeypatch.setattr(compiler, "parse", lambda source: calls.append(source.path) or real(source))
    result = cli("check", str(path))
    assert result.exit_code == 0 and result.stdout.count(": ok") == 40 and len(calls) == 1
