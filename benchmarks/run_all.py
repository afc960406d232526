"""Run every benchmark, even when one misses; exit 1 naming the missed targets, else 0.

    .venv/bin/python benchmarks/run_all.py [--only NAME ...]

Each `benchmarks/*.py` (except this file and `_`-prefixed helpers) runs as its own subprocess
with the same interpreter; its output streams through. A script's `MISSED: ...` lines name
the targets it missed; a non-zero exit without such a line counts as a crash; a script that
prints `SKIPPED: ...` (its data is absent) and exits 0 is listed as skipped, not failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts(only: list[str]) -> list[Path]:
    """The benchmark scripts to run, in name order."""
    found = sorted(
        p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_")
    )
    if only:
        found = [p for p in found if p.stem in only]
    return found


def run(script: Path) -> tuple[int, list[str], bool, float]:
    """Run one script, echo its output; its exit code, MISSED lines, whether skipped, seconds."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=HERE.parent,
    )
    assert process.stdout is not None
    missed = []
    skipped = False
    for line in process.stdout:
        print(f"  {line}", end="", flush=True)
        if line.startswith("MISSED:"):
            missed.append(line.strip())
        skipped = skipped or line.startswith("SKIPPED:")
    return process.wait(), missed, skipped, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[], help="script names without .py")
    args = parser.parse_args()
    results = []
    for script in scripts(args.only):
        print(f"== {script.name}", flush=True)
        code, missed, skipped, seconds = run(script)
        results.append((script.name, code, missed, skipped, seconds))
    print("\n== summary")
    failed: list[str] = []
    for name, code, missed, skipped, seconds in results:
        if missed:
            status = f"missed {len(missed)}"
        elif code:
            status = f"crashed (exit {code})"
        else:
            status = "skipped" if skipped else "ok"
        print(f"{name:24} {status:18} {seconds:7.1f} s")
        failed += [f"{name}: {line.removeprefix('MISSED: ')}" for line in missed]
        if code and not missed:
            failed.append(f"{name}: exited {code} without naming a target")
    for line in failed:
        print(f"MISSED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
