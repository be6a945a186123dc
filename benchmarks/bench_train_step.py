"""Train-step throughput (examples/s) of paper 000's U-Net and 3D CNN-UP at 192x320, paper widths.

Runs the library's jitted train step (``semdepth_jax.train.step.make_train_step``) with the paper's loss
and optimiser (``configs/ssegdepnet.py`` presets) on random data, on one device: one warm-up step
(compilation) and then ``--steps`` timed steps; reports the median step time and examples/s.

  python benchmarks/bench_train_step.py [--models unet,cnn3d_up] [--batch 2] [--steps 3]

Not a test; run it once on the target machine (2 CPU cores in CI). A full-size 3D CNN-UP step needs
several GB of RAM and minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from semdepth_jax.models import get_model  # noqa: E402
from semdepth_jax.train import config_utils, loop, optim  # noqa: E402
from semdepth_jax.train import step as step_lib  # noqa: E402
from semdepth_jax.train.state import create_state, param_count, split_variables  # noqa: E402

CONFIG = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "ssegdepnet.py"
)


def bench(model_name: str, batch: int, steps: int, height: int, width: int) -> dict:
  cfg = config_utils.load_config(
    f"{CONFIG}:model={model_name},size=paper", [f"--config.image_size=({height}, {width})"]
  )
  st = cfg.stages.train
  kw = loop.model_kwargs(cfg, st)
  model = get_model(kw.pop("name"), **kw)
  loss_fn = loop.default_loss_builder(cfg)(st.loss)
  rng = np.random.default_rng(0)
  data = {
    "image": jnp.asarray(rng.random((batch, height, width, 3)), jnp.float32),
    "depth": jnp.asarray(1 + 60 * rng.random((batch, height, width)), jnp.float32),
    "segmentation": jnp.asarray(rng.integers(0, 14, (batch, height, width)), jnp.int32),
    "has_depth": jnp.ones(batch, bool),
    "has_segmentation": jnp.ones(batch, bool),
  }
  init_kwargs = {"labels": data["segmentation"][:1]} if step_lib.accepts_labels(model) else {}
  variables = model.init(jax.random.PRNGKey(0), data["image"][:1], train=False, **init_kwargs)
  params, stats = split_variables(variables)
  schedule = optim.make_schedule(st.schedule, float(st.optimizer.learning_rate), 1000)
  tx = optim.make_optimizer(st.optimizer, schedule)
  state = create_state(params, stats, tx.init(params), jax.random.PRNGKey(1))
  fn = jax.jit(step_lib.make_train_step(model, loss_fn, tx), donate_argnums=(0,))
  t0 = time.perf_counter()
  state, metrics = fn(state, data)
  jax.block_until_ready(metrics)
  warmup = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = fn(state, data)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  med = statistics.median(times)
  return {
    "model": model_name,
    "params": param_count(params),
    "batch": batch,
    "size": [height, width],
    "warmup_s": round(warmup, 2),
    "step_s": [round(t, 3) for t in times],
    "median_step_s": round(med, 3),
    "examples_per_s": round(batch / med, 3),
    "loss": float(metrics["loss"]),
    "backend": jax.default_backend(),
    "cpu_count": os.cpu_count(),
  }


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--models", default="unet,cnn3d_up")
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--height", type=int, default=192)
  p.add_argument("--width", type=int, default=320)
  args = p.parse_args()
  for name in args.models.split(","):
    print(json.dumps(bench(name, args.batch, args.steps, args.height, args.width)), flush=True)


if __name__ == "__main__":
  main()
