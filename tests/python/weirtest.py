"""Shared by the driver scripts of tests/drivers.rs: where weir is, and how a script
counts what it checked and reports what went wrong.

The Rust test passes the connection as WEIR_TEST_DSN (a postgresql:// URL through weir)
and reads the script's exit status: 0 only if every check passed.
"""

import os
import sys
import threading
import traceback
from collections import Counter


def dsn() -> str:
    """The postgresql:// URL of weir, as given by the Rust test."""
    value = os.environ.get("WEIR_TEST_DSN")
    if not value:
        sys.exit("WEIR_TEST_DSN is not set: run this script from tests/drivers.rs")
    return value


class WrongAnswer(Exception):
    """A driver call succeeded but returned something other than what was expected."""


def expect(what: str, got, want) -> None:
    """Raises WrongAnswer unless got == want."""
    if got != want:
        raise WrongAnswer(f"{what}: got {got!r}, want {want!r}")


class Tally:
    """Checks passed and failures seen, from any thread or task.

    Each client records its failure and stops; the script carries on with the others so
    that the report shows how widespread a problem is.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.checks = Counter()
        self.failures = []

    def ok(self, what: str, n: int = 1) -> None:
        """Counts `n` passed checks of kind `what`."""
        with self._lock:
            self.checks[what] += n

    def failed(self, who: str, error: BaseException) -> None:
        """Records that client `who` stopped on `error`."""
        driver_error = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's
        sqlstate = getattr(driver_error, "sqlstate", None)
        if sqlstate is None:
            sqlstate = getattr(getattr(driver_error, "diag", None), "sqlstate", None)
        first_line = (str(error).splitlines() or [""])[0]
        kind = f"{type(error).__name__} (SQLSTATE {sqlstate}): {first_line}"
        where = "".join(traceback.format_exception(error)[-4:]).strip()
        with self._lock:
            self.failures.append((who, kind, where))

    def report(self, title: str) -> None:
        """Prints what was checked; exits 1 after listing failures if there were any."""
        print(f"== {title}")
        for what, n in sorted(self.checks.items()):
            print(f"  ok {n:6d}  {what}")
        if not self.failures:
            print("  all checks passed")
            return
        print(f"  FAILED: {len(self.failures)} client(s) stopped on an error", file=sys.stderr)
        kinds = Counter(kind for _, kind, _ in self.failures)
        for kind, n in kinds.most_common(10):
            print(f"  {n:4d} x {kind}", file=sys.stderr)
        if len(kinds) > 10:
            print(f"  ... and {len(kinds) - 10} other kinds", file=sys.stderr)
        who, kind, where = self.failures[0]
        print(f"  first failure, {who}: {kind}\n{where}", file=sys.stderr)
        sys.exit(1)
