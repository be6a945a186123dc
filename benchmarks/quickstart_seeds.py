"""The main job over several seeds: the README's quickstart table as mean ± std, with the machine.

::

  python benchmarks/quickstart_seeds.py --seeds 5 --root runs/quickstart_seeds [--size small]

Runs ``semdepth quickstart`` (``semdepth_jax.quickstart.run``) once per seed, each in its own workdir
``ROOT/seed<N>`` (re-running skips finished seeds and resumes an interrupted one), then writes
``ROOT/summary.json`` and ``ROOT/summary.md``: per metric the model's mean ± std over seeds, min and max,
the trivial baselines, and whether *every* seed beats the baseline; wall time per phase (mean over seeds);
the machine (CPU model, cores), Python, jax and jaxlib versions and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "miou", "pixel_acc")
LOWER_IS_BETTER = {"abs_rel", "sq_rel", "rmse", "rmse_log"}


def machine() -> dict:
  """CPU model, logical cores, Python / jax / jaxlib versions."""
  import jax
  import jaxlib

  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {
    "cpu": cpu,
    "cores": os.cpu_count(),
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "backend": jax.default_backend(),
  }


def summarise(runs: dict[int, dict]) -> dict:
  """Mean ± std / min / max per metric over seeds, baselines, and the every-seed-beats-baseline check."""
  out = {"seeds": sorted(runs), "metrics": {}, "timing_s": {}}
  for k in METRICS:
    vals = np.array([runs[s]["model"][k] for s in sorted(runs)], np.float64)
    base = float(runs[min(runs)]["baseline"][k])
    beats = vals < base if k in LOWER_IS_BETTER else vals > base
    out["metrics"][k] = {
      "mean": float(vals.mean()),
      "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
      "min": float(vals.min()),
      "max": float(vals.max()),
      "per_seed": vals.tolist(),
      "baseline": base,
      "every_seed_beats_baseline": bool(beats.all()),
    }
  phases = sorted({p for r in runs.values() for p in r["timing_s"]})
  for p in phases:
    vals = [r["timing_s"][p] for r in runs.values() if p in r["timing_s"]]
    out["timing_s"][p] = float(np.mean(vals))
  return out


def markdown(summary: dict, info: dict, command: str) -> str:
  """The README table."""
  n = len(summary["seeds"])
  lines = [
    f"| metric | SSegDep-Net (mean ± std over {n} seeds) | min .. max | baseline | every seed better |",
    "|---|---|---|---|---|",
  ]
  for k, m in summary["metrics"].items():
    lines.append(
      f"| {k} | {m['mean']:.3f} ± {m['std']:.3f} | {m['min']:.3f} .. {m['max']:.3f} | "
      f"{m['baseline']:.3f} | {'yes' if m['every_seed_beats_baseline'] else '**no**'} |"
    )
  t = summary["timing_s"]
  phases = ", ".join(f"{k} {v / 60:.1f} min" if v >= 60 else f"{k} {v:.0f} s" for k, v in t.items())
  lines += [
    "",
    f"Machine: {info['cpu']}, {info['cores']} cores, {info['backend']}; Python {info['python']}, jax "
    f"{info['jax']}, jaxlib {info['jaxlib']}. Seeds {summary['seeds']}. Mean wall time per run: {phases}.",
    f"Command: `{command}`",
  ]
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0 .. N-1)")
  parser.add_argument("--first_seed", type=int, default=0)
  parser.add_argument("--root", default=os.path.join("runs", "quickstart_seeds"))
  parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS_DATA_DIR)")
  parser.add_argument("--size", default="small", choices=("small", "tiny"))
  parser.add_argument("--steps", type=int, default=None, help="batches per stage (default: tuned)")
  args = parser.parse_args(argv)

  from semdepth_jax import quickstart
  from semdepth_jax.train.cli import setup_logging

  setup_logging()
  command = "python benchmarks/quickstart_seeds.py " + " ".join(
    sys.argv[1:] if argv is None else argv
  )
  runs = {}
  for seed in range(args.first_seed, args.first_seed + args.seeds):
    workdir = os.path.join(args.root, f"seed{seed}")
    done = os.path.join(workdir, "quickstart_results.json")
    if os.path.isfile(done):
      with open(done, encoding="utf-8") as f:
        runs[seed] = json.load(f)
      print(f"seed {seed}: already done ({done})", flush=True)
      continue
    t0 = time.perf_counter()
    res = quickstart.run(
      workdir,
      data_dir=args.data_dir,
      size=args.size,
      steps=args.steps,
      seed=seed,
      overrides=["--config.progress_bar=False"],
    )
    runs[seed] = {k: v for k, v in res.items() if k != "report"}
    print(f"seed {seed}: {time.perf_counter() - t0:.0f} s, " + ", ".join(
      f"{k} {res['model'][k]:.4f}" for k in METRICS
    ), flush=True)  # fmt: skip
  info = machine()
  summary = summarise(runs)
  summary["machine"] = info
  summary["command"] = command
  os.makedirs(args.root, exist_ok=True)
  with open(os.path.join(args.root, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  md = markdown(summary, info, command)
  with open(os.path.join(args.root, "summary.md"), "w", encoding="utf-8") as f:
    f.write(md)
  print(md)
  return 0 if all(m["every_seed_beats_baseline"] for m in summary["metrics"].values()) else 1


if __name__ == "__main__":
  sys.exit(main())
