"""What every benchmark script records beside its figures: the code measured, peak memory, progress lines."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def code_version() -> dict:
    """The commit measured and the files changed in the working tree (other work in progress is measured too)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=CHECKOUT).stdout.rstrip()
        except OSError:
            return ""
    return {"commit": git("rev-parse", "HEAD").strip(),
            "uncommitted": [line[3:] for line in git("status", "--short").splitlines()]}


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MB (the embedded ClickHouse included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def say(text: str) -> None:
    """A progress line on stderr (stdout carries the figures)."""
    print(text, file=sys.stderr, flush=True)
