"""A live store stays readable when other processes open it while this process reads it too."""

from __future__ import annotations

import subprocess
import sys

from phasewatch.analysis import load_run
from phasewatch.analysis.store import TraceWriter

# What `sqlite3 trace.sqlite "select ..."` in a shell does: a read-write connection, closed.
SHELL_QUERY = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
print(con.execute("select count(*) from names").fetchone()[0])
con.close()
"""


def test_rows_written_after_a_shell_query_reach_the_file_other_readers_open(tmp_path) -> None:
    """Reading the run in the writer's own process (as PhaseMonitor does) then querying it
    from a shell once used to detach the writer from the file: the shell's close deleted the
    WAL the writer was still appending to, and no later row was visible or survived a kill."""
    writer = TraceWriter(tmp_path)
    try:
        for step in range(10):
            writer.log_scalars({"train/loss": 1.0 / (step + 1)}, step)
        writer.flush()
        with load_run(tmp_path) as trace:  # a reader in the writer's process
            assert trace.series("train/loss")[0].tolist() == list(range(10))
        subprocess.run([sys.executable, "-c", SHELL_QUERY, str(tmp_path / "trace.sqlite")],
                       check=True, capture_output=True)
        for step in range(10, 20):
            writer.log_scalars({"train/loss": 1.0 / (step + 1)}, step)
        writer.flush()
        seen = subprocess.run(  # a new reader process, as `phasewatch watch` or a notebook
            [sys.executable, "-c", "import sys; from phasewatch.analysis import load_run; "
             "print(len(load_run(sys.argv[1]).series('train/loss')[0]))", str(tmp_path)],
            check=True, capture_output=True, text=True).stdout.strip()
        assert seen == "20"
    finally:
        writer.close()
