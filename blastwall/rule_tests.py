"""``rule test`` from the shell: each rule file's inline tests on a fresh embedded store.

chdb runs one embedded store per process. When this process already holds one (the
console, a test with its store open), the tests run in a child process instead, which
prints its report as JSON; otherwise they run here, one scratch store after another.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from blastwall.store import embedded_open, scratch_store
from detector.rules import RuleTestReport, test_rules


def run_rule_tests(folders: Iterable[Path], only: str | None = None) -> RuleTestReport:
    """Validate, check invariants and run the inline tests of every rule of the folders (or one).

    Parameters
    ----------
    folders : iterable of Path
        The built-in rules first, then the settings' folders.
    only : str, optional
        One rule id.

    Returns
    -------
    RuleTestReport
    """
    folders = [Path(f) for f in folders]
    if embedded_open() is None:
        return test_rules(folders, scratch_store, only)
    command = [sys.executable, "-m", "blastwall.rule_tests", *(["--only", only] if only else []),
               *map(str, folders)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the rule tests failed to run: {done.stderr.strip()[-2000:]}")
    return RuleTestReport.from_json(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """``python -m blastwall.rule_tests [--only ID] FOLDER…``: the report as one JSON line."""
    args = list(sys.argv[1:] if argv is None else argv)
    only = None
    if args[:1] == ["--only"]:
        only, args = args[1], args[2:]
    print(test_rules([Path(a) for a in args], scratch_store, only).to_json())


if __name__ == "__main__":
    main()
