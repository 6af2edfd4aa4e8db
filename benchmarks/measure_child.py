"""Run a command and report its own peak memory, untouched by the caller's.

Linux carries a process's resident high-water mark across ``exec``: a child started
from a large process (a benchmark that imported PyTorch and drew a big image) inherits
the parent's resident pages in its ``ru_maxrss``. This launcher is started with only
the standard library (``python -S``), so it is small when it starts the command; the
command's ``ru_maxrss`` from ``wait4`` then counts the command's own pages. Its resident
memory is also sampled every 0.2 s to show which stage peaks.

Usage: ``python -S measure_child.py RESULT.json -- CMD ...``; RESULT.json gets
``{"exit": code, "seconds": s, "peak_rss": bytes, "samples": [[t, bytes], ...]}``.
"""

import json
import os
import sys
import threading
import time


def sample_rss(pid: int, samples: list, stop: threading.Event) -> None:
    t0 = time.perf_counter()
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        samples.append((time.perf_counter() - t0, int(line.split()[1]) * 1024))
                        break
        except OSError:
            break
        stop.wait(0.2)


def main() -> int:
    result, sep, *cmd = sys.argv[1:]
    if sep != "--" or not cmd:
        print("usage: measure_child.py RESULT.json -- CMD ...", file=sys.stderr)
        return 2
    samples: list = []
    stop = threading.Event()
    t = time.perf_counter()
    pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    sampler = threading.Thread(target=sample_rss, args=(pid, samples, stop))
    sampler.start()
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t
    stop.set()
    sampler.join()
    with open(result, "w") as fh:
        json.dump({"exit": os.waitstatus_to_exitcode(status), "seconds": seconds,
                   "peak_rss": usage.ru_maxrss * 1024, "samples": samples}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
