"""``latentcam`` with test-only slowdowns, launched as a subprocess by test_kill_writers.py.

Usage: ``python slow_writer.py ARGS...`` runs ``latentcam ARGS...``;
``python slow_writer.py --atomic FILE`` opens ``latentcam.io.atomic_write(FILE)``, writes
half a file, prints ``writing`` and hangs. Environment:

``SLOW_DECODE``
    seconds every image decoded into the cache takes beyond its own time, so that a kill
    lands inside a cache build.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def main(argv: list[str]) -> int:
    if argv[:1] == ["--atomic"]:
        from latentcam.io import atomic_write

        with atomic_write(argv[1]) as fh:
            fh.write('{"half": ')
            fh.flush()
            print("writing", flush=True)
            time.sleep(600)
        return 0
    delay = float(os.environ.get("SLOW_DECODE", "0") or 0)
    if delay > 0:
        from latentcam.data import imageio

        decode = imageio.decode_or_error

        def slow(job: Any) -> Any:
            time.sleep(delay)
            return decode(job)

        imageio.decode_or_error = slow  # type: ignore[assignment]
    from latentcam.cli import main as latentcam

    return latentcam(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
