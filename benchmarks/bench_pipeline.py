"""Input-pipeline throughput (examples/s) for 192x320 training crops with flip / scale / jitter.

Reads ``synthetic_city`` (default config, 192x320 frames; built into ``--data_dir`` first if missing) and
times ``make_train_iterator`` with ``transforms.EIGEN_AUGMENT`` (scale s in [1, 1.5] with depth / s, random
192x320 crop, horizontal flip, brightness / contrast / saturation / colour jitter) for several
thread / worker-process settings, after a warm-up. Also times TFDS decoding alone.

  python benchmarks/bench_pipeline.py --data_dir /tmp/semdepth_bench_tfds [--num_batches 40]

Never run as a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TFDS_DISABLE_GCS", "1")

import numpy as np  # noqa: E402

from semdepth_jax.data import pipeline  # noqa: E402
from semdepth_jax.data import transforms as tr  # noqa: E402


def ensure_built(dataset: str, data_dir: str) -> None:
  builder = pipeline.get_builder(dataset, data_dir)
  if not builder.is_prepared():
    import tensorflow_datasets as tfds

    print(f"building {dataset} into {data_dir} ...", flush=True)
    t = time.perf_counter()
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    print(f"built in {time.perf_counter() - t:.1f} s", flush=True)


def time_iterator(it, batch_size: int, num_batches: int, warmup: int) -> tuple[float, float]:
  """(examples per wall second, examples per CPU second of this process and its threads)."""
  for _ in range(warmup):
    next(it)
  t, c = time.perf_counter(), time.process_time()
  for _ in range(num_batches):
    next(it)
  n = num_batches * batch_size
  return n / (time.perf_counter() - t), n / (time.process_time() - c)


def setting_rate(
  dataset: str,
  data_dir: str,
  batch_size: int,
  size: tuple[int, int],
  threads: int,
  workers: int,
  num_batches: int,
  warmup: int,
) -> tuple[float, float]:
  """(examples/s, per CPU-second) of ``make_train_iterator`` with EIGEN_AUGMENT at one setting."""
  it = pipeline.make_train_iterator(
    dataset,
    data_dir=data_dir,
    batch_size=batch_size,
    image_size=tuple(size),
    seed=0,
    augment=tr.EIGEN_AUGMENT,
    process_index=0,
    process_count=1,
    num_threads=threads,
    worker_count=workers,
  )
  try:
    return time_iterator(it, batch_size, num_batches, warmup)
  finally:
    close = getattr(it, "close", None)
    if close is not None:
      close()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--dataset", default="synthetic_city")
  parser.add_argument("--data_dir", default="/tmp/semdepth_bench_tfds")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--num_batches", type=int, default=40)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--height", type=int, default=192)
  parser.add_argument("--width", type=int, default=320)
  parser.add_argument(
    "--settings",
    default="0:0,1:0,2:0,0:2",
    help="comma-separated num_threads:worker_count pairs",
  )
  args = parser.parse_args(argv)
  ensure_built(args.dataset, args.data_dir)
  size = (args.height, args.width)
  print(f"cpu cores available: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()}")

  src = pipeline.open_source(args.dataset, "train", args.data_dir)
  n = min(len(src), 100)
  t, c = time.perf_counter(), time.process_time()
  for i in range(n):
    src[i]
  print(
    f"TFDS decode only: {n / (time.perf_counter() - t):.1f} examples/s, "
    f"{n / (time.process_time() - c):.1f} per CPU-second"
  )
  rng = np.random.default_rng(0)
  exs = [src[i] for i in range(min(len(src), 20))]  # small configs (synthetic_city/tiny) have fewer
  t, c = time.perf_counter(), time.process_time()
  for _ in range(3):
    for ex in exs:
      tr.preprocess_train(ex, rng, image_size=size, augment=tr.EIGEN_AUGMENT)
  done = 3 * len(exs)
  print(
    f"transforms only (1 thread): {done / (time.perf_counter() - t):.1f} examples/s, "
    f"{done / (time.process_time() - c):.1f} per CPU-second"
  )

  for setting in args.settings.split(","):
    threads, workers = (int(v) for v in setting.split(":"))
    rate, cpu_rate = setting_rate(
      args.dataset,
      args.data_dir,
      args.batch_size,
      size,
      threads,
      workers,
      args.num_batches,
      args.warmup,
    )
    # With worker processes the work happens in the children: their CPU time is not measured here.
    cpu = f", {cpu_rate:.1f} per CPU-second" if workers == 0 else ""
    print(
      f"pipeline num_threads={threads} worker_count={workers}: {rate:.1f} examples/s{cpu} "
      f"({args.height}x{args.width} crops, batch {args.batch_size}, EIGEN_AUGMENT)",
      flush=True,
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
