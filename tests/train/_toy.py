"""A tiny flax model, loss, in-memory dataset and evaluator for the generic training tests.

The loop is tested with these instead of the paper models so the tests stay fast and check the trainer,
not the architectures (those have their own tests).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import common
from semdepth_jax.data import pipeline
from semdepth_jax.train import config_utils, loop

H, W = 8, 12
NUM_CLASSES = 3


class ToyNet(nn.Module):
  """Conv -> BatchNorm -> ReLU -> dropout -> two 1x1 heads (``depth``, ``seg_logits``)."""

  num_classes: int = NUM_CLASSES
  features: int = 4
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, image, *, train: bool = False):
    x = nn.Conv(self.features, (3, 3), name="enc")(image)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(x)
    x = nn.relu(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    depth = nn.Conv(1, (1, 1), name="depth_head")(x)
    seg = nn.Conv(self.num_classes, (1, 1), name="seg_head")(x)
    return {"depth": depth, "seg_logits": seg}


def toy_loss(outputs, batch):
  """Masked MSE on depth + masked softmax CE on labels (per-example ``has_*`` flags respected)."""
  d = outputs["depth"][..., 0]
  valid = (batch["depth"] > 0) & batch["has_depth"][:, None, None]
  l_d = jnp.sum(jnp.where(valid, (d - batch["depth"]) ** 2, 0.0)) / jnp.maximum(valid.sum(), 1)
  logp = jax.nn.log_softmax(outputs["seg_logits"])
  lab = batch["segmentation"]
  ok = (lab != 255) & batch["has_segmentation"][:, None, None]
  nll = -jnp.take_along_axis(logp, jnp.where(ok, lab, 0)[..., None], -1)[..., 0]
  l_s = jnp.sum(jnp.where(ok, nll, 0.0)) / jnp.maximum(ok.sum(), 1)
  return l_d + l_s, {"depth": l_d, "seg": l_s}


def make_source(n: int = 16, seed: int = 0, h: int = H, w: int = W) -> list[dict]:
  """Random decoded examples in the stored format (depth is a function of the image, so it is learnable)."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = (1.0 + img[..., 0] / 64.0).astype(np.float32)
    seg = (img[..., 1] // 86).astype(np.uint8)[..., None]
    out.append(
      {
        "image": img,
        "depth": depth,
        "segmentation": seg,
        "has_depth": True,
        "has_segmentation": True,
        "intrinsics": np.zeros(4, np.float32),
        "file_name": f"{i:04d}",
      }
    )
  return out


class ToyEvaluator:
  """Masked sum of squared depth errors (RMSE) and example count."""

  def init(self):
    return {"se": jnp.zeros(()), "n": jnp.zeros(()), "examples": jnp.zeros(())}

  def update(self, acc, outputs, batch):
    m = batch["mask"][:, None, None] & (batch["depth"] > 0)
    se = jnp.sum(jnp.where(m, (outputs["depth"][..., 0] - batch["depth"]) ** 2, 0.0))
    return {
      "se": acc["se"] + se,
      "n": acc["n"] + m.sum(),
      "examples": acc["examples"] + batch["mask"].sum(),
    }

  def finish(self, acc):
    return {"rmse": float(np.sqrt(acc["se"] / acc["n"])), "examples": float(acc["examples"])}


def components(
  source, eval_source=None, image_size=(H, W), eval_batch=8, num_threads=0
) -> loop.Components:
  """Loop components over in-memory sources, with the real grain pipeline (checkpointable iterators).

  ``num_threads > 0`` reads the training stream with that many threads and a prefetch buffer of 2.
  """

  def train_iterator(batch_size, seed):
    ds = pipeline.train_dataset(
      source,
      batch_size=batch_size,
      image_size=image_size,
      seed=seed,
      process_index=0,
      process_count=1,
    )
    return pipeline.to_iterator(ds, num_threads=num_threads, prefetch=2 if num_threads else 0)

  def eval_iterator():
    ds = pipeline.eval_dataset(
      eval_source if eval_source is not None else source,
      batch_size=eval_batch,
      image_size=image_size,
      process_index=0,
      process_count=1,
    )
    return pipeline.to_iterator(ds, num_threads=0, prefetch=0)

  def build_model(kwargs):
    kwargs = {k: v for k, v in kwargs.items() if k != "name"}
    return ToyNet(**kwargs)

  return loop.Components(
    build_model=build_model,
    build_loss=lambda spec: toy_loss,
    train_iterator=train_iterator,
    num_train_examples=lambda: len(source),
    eval_iterator=eval_iterator,
    make_evaluator=lambda model: ToyEvaluator(),
  )


def config(steps: int = 6, batch_size: int = 8, every: int = 2, mesh=(1, 1), **stage_overrides):
  """A validated, locked single-stage config for the toy components (no progress bar).

  The default mesh is one device (fast compiles); pass ``mesh=(-1, 1)`` for all devices.
  """
  c = common.base_config()
  c.mesh_shape = tuple(mesh)
  c.image_size = (H, W)
  c.model = ml_collections.ConfigDict({"name": "toy", "features": 4})
  c.num_classes = NUM_CLASSES
  st = c.stages.train
  st.num_steps = steps
  st.batch_size = batch_size
  st.optimizer.name = "adam"
  st.optimizer.learning_rate = 1e-2
  for k, v in stage_overrides.items():
    st[k] = v
  c.checkpoint.every_steps = every
  c.log_every_steps = every
  c.eval.batch_size = 8
  c.progress_bar = False
  config_utils.validate_config(c)
  return config_utils.lock(c)
