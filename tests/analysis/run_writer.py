"""Write synthetic traces into real run directories through the real TraceWriter."""
import numpy as np

from phasewatch.analysis import TraceWriter


def write_run(run_dir, trace, meta=None):
    """Write every series and array of a MemoryTrace through the real TraceWriter."""
    w = TraceWriter(run_dir)
    rows: dict[int, dict] = {}
    for name in trace.names():
        s, v = trace.series(name)
        for st, val in zip(s.tolist(), v.tolist()):
            rows.setdefault(st, {})[name] = val
    for st in sorted(rows):
        w.log_scalars(rows[st], st)
    for name in trace.array_names():
        s, a = trace.arrays(name)
        for st, arr in zip(s.tolist(), a):
            w.log_array(name, st, np.asarray(arr))
    for k, v in {**trace.meta, **(meta or {})}.items():
        w.set_meta(k, v)
    w.close()
    return run_dir
