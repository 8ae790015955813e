"""An analyst's read-only DuckDB session outside our code (the concurrency test and benchmark run it).

Run as ``python -c ANALYST <database> <seconds to stay open after one of our writers started waiting on it>
<overall deadline>``: it prints the row count of ``tokens``, waits until one of our writers holds the
warehouse lock (so is waiting for it), stays open that long, and says whether a writer came.
"""

ANALYST = """
import duckdb, sys, time
from filelock import FileLock, Timeout
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT count(*) FROM tokens").fetchone()[0], flush=True)
ours, deadline = FileLock(sys.argv[1] + ".lock"), time.time() + float(sys.argv[3])
while time.time() < deadline:  # stay open until one of our writers is inside its lock, i.e. waiting for us
    try:
        ours.acquire(timeout=0)
        ours.release()
        time.sleep(0.2)
    except Timeout:
        break
time.sleep(float(sys.argv[2]))
print("released after a writer waited" if time.time() < deadline else "no writer came", flush=True)
"""
