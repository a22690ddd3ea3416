"""Time the synthetic face renderer on one core: render_faces at 64 and 128 px, write_synthetic.

For each case: one warm-up call (first-touch memory is slow on these machines), then
``--repeats`` timed calls; the table shows the median wall-clock throughput and the median
CPU-time throughput of this process (``time.process_time``). Other processes share the
CPU, so wall-clock numbers are noisy; the CPU-time column is the cost of the work itself.
Run with ``OMP_NUM_THREADS=1`` (set here by default): the renderer is single-threaded
NumPy. The last line printed is a JSON object with the numbers the project tracks
(``images_per_s_64`` is the median wall-clock rate of ``render_faces(512, 64)``).

    python benchmarks/synth_speed.py            # 5 repeats, 512 images per call
    python benchmarks/synth_speed.py --quick    # 3 repeats, 128 images per call
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

from latentcam.data.synthetic import render_faces, write_synthetic  # noqa: E402


def throughput(fn: Callable[[int], object], n: int, repeats: int) -> tuple[float, float]:
    """Median images/s over ``repeats`` calls of ``fn(call_index)`` (wall clock, process CPU)."""
    fn(-1)  # warm-up
    walls, cpus = [], []
    for i in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn(i)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return n / statistics.median(walls), n / statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case")
    parser.add_argument("--n", type=int, default=512, help="images per render call")
    parser.add_argument("--quick", action="store_true", help="3 repeats of 128 images")
    args = parser.parse_args()
    repeats, n = (3, 128) if args.quick else (args.repeats, args.n)
    n_128 = max(1, n // 2)
    rows: list[tuple[str, int, float, float]] = []

    for size, count in ((64, n), (128, n_128)):

        def render(i: int, size: int = size, count: int = count) -> None:
            render_faces(count, size, seed=i + 1)  # a new seed per call: no cached work

        wall, cpu = throughput(render, count, repeats)
        rows.append((f"render_faces(n={count}, size={size})", count, wall, cpu))

    scratch = Path(tempfile.mkdtemp(prefix="synth_speed_"))
    try:

        def write(i: int) -> None:
            out = scratch / f"run{i + 1}"
            write_synthetic(out, n, 64, seed=0, progress=False)
            shutil.rmtree(out)

        wall, cpu = throughput(write, n, repeats)
        rows.append((f"write_synthetic(n={n}, size=64)", n, wall, cpu))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(
        f"synthetic faces, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, medians of {repeats} runs"
    )
    print(f"{'case':36s} {'images':>7s} {'img/s (wall)':>13s} {'img/s (cpu)':>12s}")
    for name, count, wall, cpu in rows:
        print(f"{name:36s} {count:7d} {wall:13.0f} {cpu:12.0f}")
    print(
        json.dumps(
            {
                "images_per_s_64": round(rows[0][2], 1),
                "images_per_s_64_cpu": round(rows[0][3], 1),
                "images_per_s_128": round(rows[1][2], 1),
                "images_per_s_128_cpu": round(rows[1][3], 1),
                "write_images_per_s_64": round(rows[2][2], 1),
                "write_images_per_s_64_cpu": round(rows[2][3], 1),
                "repeats": repeats,
                "n": n,
            }
        )
    )


if __name__ == "__main__":
    main()
