"""One JAX process of the simulated multi-host run of ``tests/train/test_multihost.py``.

The test starts ``P`` of these on localhost with ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID`` and ``XLA_FLAGS=--xla_force_host_platform_device_count=<devices per process>`` set, exactly
as a pod or cluster launch would; ``loop.train`` initialises ``jax.distributed`` from them
(``mesh.maybe_initialize_distributed``). Every process reads its own shard of the toy data
(``pipeline.process_layout``) and trains on the ``('data', 'model')`` mesh over all processes' devices.

Usage: ``python -m tests.train.multihost_worker OUT WORKDIR[:STOP_AT] ...``: trains the toy config of
:func:`config` in each workdir in turn (resuming from its checkpoints, if any; ``STOP_AT`` stops after that
step like an interruption). Process 0 writes ``OUT/<i>.npz`` (the state's leaves, in ``jax.tree.leaves``
order) and ``OUT/<i>.json`` (eval metrics, step, process and device counts) for the ``i``-th workdir.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from semdepth_jax.data import pipeline
from semdepth_jax.train import loop
from tests.train import _toy

NUM_TRAIN, NUM_EVAL = 16, 11
STEPS, BATCH, EVAL_BATCH = 3, 8, 8


def config():
  """The toy config of the test: 3 steps of global batch 8, checkpoints at 2 and 3, all devices on 'data'.

  The encoder kernel (and its optimiser state) is split over all 8 devices, so each process holds and
  checkpoints only its half; the rest of the state is replicated.

  SGD, not the toy's Adam: the conv bias before BatchNorm has a zero gradient up to rounding, which Adam
  scales up to full-size steps, so its value would depend on the order of the cross-device sums.
  """
  cfg = _toy.config(steps=STEPS, batch_size=BATCH, every=2, mesh=(-1, 1))
  with cfg.unlocked():
    cfg.model.features = 8
    cfg.param_sharding = [("enc/kernel", (None, None, None, "data"))]
    cfg.eval.batch_size = EVAL_BATCH
    cfg.stages.train.optimizer.name = "sgd"
    cfg.stages.train.optimizer.learning_rate = 0.05
  return cfg


class _Concat:
  """Iterator of the row-wise concatenation of several per-process iterators' batches (process order)."""

  def __init__(self, iterators):
    self._its = list(iterators)

  def __iter__(self):
    return self

  def __next__(self):
    parts = [next(it) for it in self._its]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}

  def get_state(self):
    # Each process consumes the same number of batches: their (position-only) states coincide.
    return self._its[0].get_state()

  def set_state(self, state):
    for it in self._its:
      it.set_state(state)


def components(emulate_processes: int | None = None) -> loop.Components:
  """Toy components whose data is sharded per process.

  Args:
    emulate_processes: None = this process's shard (``jax.process_index()`` of ``jax.process_count()``);
      ``P`` = one process that reads all ``P`` shards and concatenates their batches in process order, i.e.
      the global batches a ``P``-process run assembles with ``make_array_from_process_local_data``.
  """
  source = _toy.make_source(NUM_TRAIN)
  eval_source = _toy.make_source(NUM_EVAL, seed=3)

  def layouts():
    if emulate_processes is None:
      return [pipeline.process_layout()]
    return [(p, emulate_processes) for p in range(emulate_processes)]

  def combine(iterators):
    return iterators[0] if len(iterators) == 1 else _Concat(iterators)

  def train_iterator(batch_size, seed):
    its = []
    for p, n in layouts():
      ds = pipeline.train_dataset(
        source,
        batch_size=pipeline.per_process_batch_size(batch_size, n),
        image_size=(_toy.H, _toy.W),
        seed=seed,
        process_index=p,
        process_count=n,
      )
      its.append(pipeline.to_iterator(ds, num_threads=0, prefetch=0))
    return combine(its)

  def eval_iterator():
    its = []
    for p, n in layouts():
      ds = pipeline.eval_dataset(
        eval_source,
        batch_size=pipeline.per_process_batch_size(EVAL_BATCH, n),
        image_size=(_toy.H, _toy.W),
        process_index=p,
        process_count=n,
      )
      its.append(pipeline.to_iterator(ds, num_threads=0, prefetch=0))
    return combine(its)

  base = _toy.components(source, eval_source)
  base.train_iterator = train_iterator
  base.eval_iterator = eval_iterator
  return base


def state_leaves(state) -> list[np.ndarray]:
  """The train state's leaves as host numpy arrays (sharded ones gathered from all processes)."""
  import jax

  from semdepth_jax.train import mesh

  return jax.tree.leaves(mesh.host_tree(state))


def main(argv: list[str]) -> int:
  import jax

  out = argv[0]
  for i, spec in enumerate(argv[1:]):
    workdir, _, stop = spec.partition(":")
    res = loop.train(
      config(), workdir, components=components(), stop_at_step=int(stop) if stop else None
    )
    leaves = state_leaves(res.state)
    if jax.process_index() == 0:
      os.makedirs(out, exist_ok=True)
      np.savez(os.path.join(out, f"{i}.npz"), *leaves)
      info = {
        "step": res.step,
        "eval": res.eval_metrics,
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
      }
      with open(os.path.join(out, f"{i}.json"), "w", encoding="utf-8") as f:
        json.dump(info, f)
  jax.distributed.shutdown()
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
