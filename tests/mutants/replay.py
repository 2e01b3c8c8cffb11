"""Replay the deliberate bugs of tests/mutants/ and say which ones the tests catch.

    python tests/mutants/replay.py [--area A] [--patch GLOB] [--keep-going]
                                   [--rev REV | --worktree] [--timeout S] [--no-baseline]

Each ``tests/mutants/<area>/<NN>-<slug>.patch`` is one small bug, a diff as
``git diff`` writes it (text before its first ``diff --git`` is a comment).
``tests/mutants/<area>/tests`` lists what should catch that area's bugs, one
pytest target a line, run as ``python -m pytest -x -q <line>``, or, after
``mpi ``, as ``mpirun -n 2 python -m pytest --with-mpi -x -q <rest>``.

For each patch: a scratch copy of the repository's tracked files at HEAD
(``--rev``: at another commit, to see what older tests caught; ``--worktree``:
as the files are in the working tree, untracked ones that git does not ignore
included, to try tests before committing them), the patch (from the working
tree) applied there, and the area's lines (the copy's list, else the working
tree's) run in order with the copy on PYTHONPATH and as the working
directory, until one fails (``--keep-going``: all of them). The patch
is *caught* (a line failed, or ran past --timeout), *survived* (all passed) or
*stale* (it no longer applies: the code moved, rewrite the patch). Before an
area's patches its lines are run once on the unpatched copy: if they fail
there, no patch of that area can be judged, and the table says so. A report,
not a gate: the exit status is 0.

Standard library only; not collected by pytest (not named test_*); not run in CI.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


@dataclass
class Outcome:
    patch: str
    result: str  # caught, survived, stale, not judged
    by: str  # the test line that failed, or why
    seconds: float


def git(*args: str, cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, **kwargs)


def copy_tree(dest: Path, rev: str | None) -> None:
    """The repository's tracked files at ``rev`` (None: as in the working tree) into ``dest``."""
    if rev is not None:
        archive = git("archive", "--format=tar", rev).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            if hasattr(tarfile, "tar_filter"):  # 3.12, and 3.11.4 on
                tar.extractall(dest, filter="tar")
            else:
                tar.extractall(dest)
        return
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    for name in filter(None, listed.decode().split("\0")):
        src = ROOT / name
        if src.is_file():  # a tracked file deleted in the working tree is left out
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
            target.chmod(src.stat().st_mode)


def command(line: str) -> list[str]:
    words = shlex.split(line)
    if words[0] == "mpi":
        return ["mpirun", "-n", "2", sys.executable, "-m", "pytest", "--with-mpi", "-x", "-q",
                "-p", "no:cacheprovider", *words[1:]]
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *words]


def run_line(line: str, copy: Path, timeout: float) -> str | None:
    """None if the line's tests pass in ``copy``; else how they failed."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(command(line), cwd=copy, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the job and nothing else
        proc.communicate()
        return f"timeout after {timeout:.0f} s"
    except BaseException:  # interrupted: the job goes with the replay
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    if proc.returncode == 0:
        return None
    if proc.returncode == 5:  # pytest collected nothing: the line is wrong, not the code
        return "no tests collected (exit 5)"
    tail = [s for s in out.decode(errors="replace").splitlines() if s.startswith("FAILED")]
    return tail[0] if tail else f"exit {proc.returncode}"


def judge(area: str, patch: Path | None, rev: str | None, timeout: float,
          keep_going: bool = False) -> tuple[str, str]:
    """(result, by): the area's lines run on a fresh copy, with ``patch`` applied if given,
    in order until one fails (``keep_going``: all of them, to see every line that fails).
    The lines are the copy's own list (a commit's tests go with its list), or, where it has
    none, the working tree's."""
    with tempfile.TemporaryDirectory(prefix="distnn-mutant-") as tmp:
        copy = Path(tmp) / "repo"
        copy.mkdir()
        copy_tree(copy, rev)
        if patch is not None:
            # No repository above the copy: git apply then patches plain files.
            env = dict(os.environ, GIT_CEILING_DIRECTORIES=tmp)
            applied = subprocess.run(["git", "apply", str(patch)], cwd=copy, env=env,
                                     capture_output=True, text=True)
            if applied.returncode:
                first = (applied.stderr.strip().splitlines() or ["git apply failed"])[0]
                return "stale", first
        lines = area_lines(copy / "tests" / "mutants" / area) or area_lines(HERE / area)
        if not lines:
            return "not judged", f"no tests/mutants/{area}/tests"
        caught_by = []
        for line in lines:
            failed = run_line(line, copy, timeout)
            if failed:
                caught_by.append(f"{line}  [{failed}]")
                if not keep_going:
                    break
        return ("caught", "; ".join(caught_by)) if caught_by else ("survived", "")


def area_lines(area: Path) -> list[str]:
    listed = area / "tests"
    if not listed.exists():
        return []
    return [s.strip() for s in listed.read_text().splitlines()
            if s.strip() and not s.lstrip().startswith("#")]


def replay(area: Path, pattern: str, keep_going: bool, rev: str | None, timeout: float,
           baseline: bool) -> list[Outcome]:
    patches = sorted(p for p in area.glob("*.patch")
                     if fnmatch.fnmatch(p.name, pattern) or fnmatch.fnmatch(p.stem, pattern))
    if not patches:
        return []
    outcomes = []
    if baseline:
        t0 = time.monotonic()
        result, by = judge(area.name, None, rev, timeout)
        print(f"  {area.name}: unpatched, {'passes' if result == 'survived' else 'FAILS'} "
              f"({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
        if result != "survived":
            return [Outcome(p.name, "not judged", f"the unpatched tests fail: {by}", 0.0)
                    for p in patches]
    for patch in patches:
        t0 = time.monotonic()
        result, by = judge(area.name, patch, rev, timeout, keep_going)
        outcomes.append(Outcome(patch.name, result, by, time.monotonic() - t0))
        print(f"  {area.name}/{patch.name}: {result} ({outcomes[-1].seconds:.0f} s)",
              file=sys.stderr, flush=True)
    return outcomes


def table(name: str, outcomes: list[Outcome]) -> str:
    width = max([len(o.patch) for o in outcomes] + [5])
    rows = [f"## {name}", f"{'patch':<{width}}  {'result':<10}  {'s':>5}  caught by"]
    rows += [f"{o.patch:<{width}}  {o.result:<10}  {o.seconds:>5.0f}  {o.by}" for o in outcomes]
    return "\n".join(rows)


def totals(outcomes: list[Outcome]) -> str:
    counts = {r: sum(o.result == r for o in outcomes)
              for r in ("caught", "survived", "stale", "not judged")}
    return ", ".join(f"{n} {r}" for r, n in counts.items() if n) or "no patches"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--area", help="only this area (a folder of tests/mutants)")
    parser.add_argument("--patch", default="*", help="only the patches whose name matches")
    parser.add_argument("--keep-going", action="store_true",
                        help="run all of an area's test lines on each patch, not only up to "
                             "the first that fails, to see every line that catches it")
    parser.add_argument("--worktree", action="store_true",
                        help="copy the working tree's files, not HEAD's")
    parser.add_argument("--rev", default="HEAD",
                        help="copy the files of this commit (HEAD), e.g. the one before new "
                             "tests, to see what they catch that the old ones did not")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds for one test line (300)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run of each area's tests on the unpatched copy")
    args = parser.parse_args(argv)
    # One copy for the whole replay: a commit made meanwhile changes nothing in it.
    rev = None if args.worktree else git("rev-parse", "--verify", args.rev).stdout.decode().strip()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the scratch copy is removed
    areas = sorted(d for d in HERE.iterdir() if d.is_dir() and not d.name.startswith(("_", ".")))
    if args.area:
        areas = [d for d in areas if d.name == args.area]
        if not areas:
            print(f"replay: no area {args.area!r} in {HERE}", file=sys.stderr)
            return 0
    started, everything = time.monotonic(), []
    for area in areas:
        outcomes = replay(area, args.patch, args.keep_going, rev, args.timeout,
                          not args.no_baseline)
        if outcomes:
            print(table(area.name, outcomes))
            print(f"{area.name}: {totals(outcomes)}\n", flush=True)
            everything += outcomes
    print(f"all areas: {totals(everything)}; {time.monotonic() - started:.0f} s"
          f" ({'the working tree' if rev is None else rev[:10]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
