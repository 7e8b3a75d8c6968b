#!/usr/bin/env python3
"""Buffered against direct (O_DIRECT) writes with an fdatasync after each,
as the WAL does (docs/benchmarks.md, issue 19): 1 MiB chunks, 200 of them,
each way twice, in the directory given (default: the current one).

    python3 scripts/bench_direct_write.py [DIR]
"""
import mmap
import os
import resource
import sys
import time


def run(direct: bool, path: str, n: int = 200, chunk: int = 1 << 20) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_DIRECT if direct else 0)
    fd = os.open(path, flags, 0o600)
    buf = mmap.mmap(-1, chunk)  # page-aligned, as O_DIRECT needs
    buf.write(os.urandom(chunk))
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
    for _ in range(n):
        os.write(fd, buf)
        os.fdatasync(fd)
    t1, r1 = time.time(), resource.getrusage(resource.RUSAGE_SELF)
    os.close(fd)
    os.unlink(path)
    mb = n * chunk / 1e6
    print(f"{'direct' if direct else 'buffered'}: {mb / (t1 - t0):.0f} MB/s, "
          f"kernel CPU {r1.ru_stime - r0.ru_stime:.2f} s for {mb:.0f} MB")


if __name__ == "__main__":
    target = os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".", "bench_direct_write.bin")
    for d in (False, True, False, True):
        run(d, target)
