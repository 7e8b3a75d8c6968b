"""Reads a namespace's Parquet segments with pyarrow (a reader independent of
tracevault's own) and prints its rows as one JSON array, ordered by index.
Compaction may leave a merged segment beside the small ones it replaces for a
moment, so rows are deduplicated by index (identical copies by construction).

Usage: dump_rows.py SEGMENTS_DIR
"""

import glob
import json
import os
import sys

import pyarrow.parquet as pq

rows = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.parquet"))):
    for r in pq.read_table(path).to_pylist():
        rows.setdefault(r["idx"], r)
out = []
for idx in sorted(rows):
    r = rows[idx]
    out.append(
        {
            k: (v.hex() if isinstance(v, bytes) else v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in r.items()
        }
    )
print(json.dumps(out))
