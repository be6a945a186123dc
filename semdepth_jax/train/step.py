"""Pure train and evaluation steps, and their ``jax.jit`` wrappers with explicit shardings.

The train step is ``(state, batch) -> (state, metrics)``: forward with dropout RNG ``fold_in(rng, step)``,
loss from the losses library, gradients, optimiser update, BatchNorm statistics update (frozen modules keep
theirs), global gradient norm and a finite flag.

Mixed precision (``config.compute_dtype='bfloat16'``): float32 master parameters and optimiser state; for
the forward pass the parameters and the image are cast to bfloat16 and the model is cloned with
``dtype=bfloat16`` (every registered model has that attribute and hands it to its layers, so convolutions,
matmuls and activations run in bfloat16); outputs are cast back to float32 before the loss, so losses,
gradients (of the float32 parameters) and updates are float32.

Rematerialisation (``config.remat``, :data:`REMAT_POLICIES`): ``jax.checkpoint`` around the forward pass
with a saving policy; ``'dots'`` keeps convolution / matmul outputs and recomputes the elementwise layers
(BatchNorm, activations, dropout masks from the same key) in the backward pass, ``'full'`` keeps nothing
inside the forward. Results are the same function (gradients equal up to float rounding); only memory and
time change.

CPU convolution kernels of the train step (``config.cpu_conv``, :data:`CPU_CONV_IMPLS`): jaxlib's YNNPACK
fusions (default) or XLA's Eigen kernels, a per-model speed choice on CPU; same results to float rounding.
1x1 convolutions of the train step (``config.pointwise_conv``): one convolution (default) or one matrix
product (``'dot'``, ``semdepth_jax.models.layers.pointwise_conv_impl``; faster on CPU, same results to float
rounding). 3-D convolutions (``config.volume_conv``): one 3-D convolution (default) or a sum of 2-D ones
over the kernel's depth taps (``'planes'``, ``layers.volume_conv_impl``; faster on CPU, same results to
float rounding).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from semdepth_jax import resize
from semdepth_jax.train.mesh import batch_sharding, replicated
from semdepth_jax.train.state import TrainState

LossFn = Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[jax.Array, Mapping[str, jax.Array]]]

BATCH_ARRAY_KEYS = (
  "image",
  "depth",
  "segmentation",
  "has_depth",
  "has_segmentation",
  "mask",
  "intrinsics",
)
"""Batch fields that go to the device (strings such as ``file_name`` stay on the host)."""

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

REMAT_POLICIES: dict[str, Any] = {
  "none": None,
  "dots": jax.checkpoint_policies.dots_saveable,
  "full": jax.checkpoint_policies.nothing_saveable,
}
"""``config.remat`` -> ``jax.checkpoint`` policy of the forward pass (``'none'``: no rematerialisation)."""


def device_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
  """Keeps the numeric batch fields that the steps read (see :data:`BATCH_ARRAY_KEYS`)."""
  return {k: batch[k] for k in BATCH_ARRAY_KEYS if k in batch}


def accepts_labels(model: nn.Module) -> bool:
  """Whether ``model.__call__`` takes a ``labels`` argument (models that build OHESS planes from GT)."""
  try:
    return "labels" in inspect.signature(type(model).__call__).parameters
  except (TypeError, ValueError):
    return False


def _cast_floating(tree: Any, dtype: Any) -> Any:
  return jax.tree.map(
    lambda x: x.astype(dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, tree
  )


def apply_model(
  model: nn.Module,
  variables: Mapping[str, Any],
  batch: Mapping[str, Any],
  *,
  train: bool,
  rng: jax.Array | None = None,
  compute_dtype: Any = jnp.float32,
  pass_labels: bool | None = None,
) -> tuple[dict[str, Any], Any]:
  """Runs the model on ``batch['image']``; returns ``(outputs, new_batch_stats or None)``.

  Args:
    model: a linen module following the models API (conventions.md, "Models").
    variables: ``{'params': ..., 'batch_stats': ...}`` (batch_stats optional).
    batch: must hold ``image`` float32 (B, H, W, 3) in [0, 1]; ``segmentation`` int32 (B, H, W) is passed
      as ``labels`` to models whose ``__call__`` accepts it.
    train: training mode (dropout on, BatchNorm batch statistics, statistics updated).
    rng: dropout key (train mode).
    compute_dtype: float32 or bfloat16; parameters and image are cast to it, the model is cloned with
      ``dtype=compute_dtype`` when it has a ``dtype`` attribute, outputs are cast back to float32.
    pass_labels: override the ``labels`` detection.

  Returns:
    ``(outputs, batch_stats)``: outputs dict with float32 arrays; the updated statistics in train mode
    when the model has BatchNorm, else None.
  """
  if pass_labels is None:
    pass_labels = accepts_labels(model)
  image = batch["image"]
  if compute_dtype != jnp.float32:
    variables = dict(variables)
    variables["params"] = _cast_floating(variables["params"], compute_dtype)
    image = image.astype(compute_dtype)
    if "dtype" in {f.name for f in dataclasses.fields(model)}:
      model = model.clone(dtype=compute_dtype)
  kwargs: dict[str, Any] = {"train": train}
  if pass_labels and "segmentation" in batch:
    kwargs["labels"] = batch["segmentation"]
  has_stats = bool(variables.get("batch_stats"))
  if train and has_stats:
    outputs, mutated = model.apply(
      variables, image, mutable=["batch_stats"], rngs={"dropout": rng}, **kwargs
    )
    new_stats = mutated["batch_stats"]
  else:
    outputs = model.apply(variables, image, rngs={"dropout": rng} if train else None, **kwargs)
    new_stats = None
  outputs = _cast_floating(outputs, jnp.float32)
  return outputs, new_stats


def make_train_step(
  model: nn.Module,
  loss_fn: LossFn,
  tx: optax.GradientTransformation,
  *,
  trainable: Any | None = None,
  trainable_stats: Any | None = None,
  compute_dtype: str = "float32",
  pass_labels: bool | None = None,
  remat: str = "none",
) -> Callable[[TrainState, Mapping[str, Any]], tuple[TrainState, dict[str, jax.Array]]]:
  """Builds the pure train step ``(state, batch) -> (new_state, metrics)``.

  Args:
    model: linen module (the current stage's configuration).
    loss_fn: ``loss_fn(outputs, batch) -> (total, aux)``, float32 scalar total (losses library).
    tx: optimiser from :func:`semdepth_jax.train.optim.make_optimizer` (freezing included).
    trainable: boolean pytree like params; frozen leaves are excluded from the gradient norm.
    trainable_stats: boolean pytree like batch_stats; False leaves keep their old statistics (frozen
      modules), True leaves take the train-mode update.
    compute_dtype: ``'float32'`` or ``'bfloat16'`` (mixed precision with float32 master parameters).
    pass_labels: pass ``batch['segmentation']`` as ``labels`` (default: detected from the signature).
    remat: rematerialisation policy of the forward pass, a key of :data:`REMAT_POLICIES`.

  Returns:
    The step function. ``metrics`` holds float32 scalars ``loss``, the loss's aux terms, ``grad_norm``
    (global L2 norm of the trainable gradients) and bool ``finite`` (loss and grad norm finite). When not
    finite, the returned state equals the input state except for ``step`` (so the state in memory stays
    usable); the loop raises.

  Raises:
    ValueError: unknown ``compute_dtype`` or ``remat``.
  """
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute_dtype must be one of {tuple(COMPUTE_DTYPES)}, got {compute_dtype!r}")
  if remat not in REMAT_POLICIES:
    raise ValueError(f"config.remat must be one of {tuple(REMAT_POLICIES)}, got {remat!r}")
  dtype = COMPUTE_DTYPES[compute_dtype]
  if pass_labels is None:
    pass_labels = accepts_labels(model)

  def step_fn(state: TrainState, batch: Mapping[str, Any]):
    rng = jax.random.fold_in(state.rng, state.step)

    def forward(params):
      variables = {"params": params}
      if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
      return apply_model(
        model,
        variables,
        batch,
        train=True,
        rng=rng,
        compute_dtype=dtype,
        pass_labels=pass_labels,
      )

    if REMAT_POLICIES[remat] is not None:
      forward = jax.checkpoint(forward, policy=REMAT_POLICIES[remat])

    def loss_of(params):
      outputs, new_stats = forward(params)
      total, aux = loss_fn(outputs, batch)
      return jnp.asarray(total, jnp.float32), (dict(aux), new_stats)

    (loss, (aux, new_stats)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    norm_grads = grads
    if trainable is not None:
      norm_grads = jax.tree.map(lambda g, t: g if t else jnp.zeros_like(g), grads, trainable)
    grad_norm = optax.tree.norm(norm_grads)
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    if new_stats is None:
      new_stats = state.batch_stats
    elif trainable_stats is not None:
      new_stats = jax.tree.map(
        lambda new, old, t: new if t else old, new_stats, state.batch_stats, trainable_stats
      )
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def keep_if_finite(new, old):
      return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

    new_state = state.replace(
      step=state.step + 1,
      params=keep_if_finite(new_params, state.params),
      batch_stats=keep_if_finite(new_stats, state.batch_stats),
      opt_state=keep_if_finite(new_opt_state, state.opt_state),
    )
    metrics = {"loss": loss, "grad_norm": grad_norm, "finite": finite}
    for k, v in aux.items():
      if k not in metrics:
        metrics[k] = jnp.asarray(v, jnp.float32)
    return new_state, metrics

  return step_fn


CPU_CONV_IMPLS: dict[str, dict[str, str] | None] = {
  "ynn": None,
  "eigen": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"},
}
"""``config.cpu_conv`` -> XLA compiler options of the train step on the CPU backend.

``'ynn'`` (default): jaxlib's own choice, every convolution in a YNNPACK fusion (jaxlib 0.10). ``'eigen'``:
only matrix products go to YNNPACK; convolutions and their gradients use XLA's Eigen kernels. Same
operators, different kernels: results agree to float rounding, not bitwise. Which is faster depends on the
model (measured side by side with ``benchmarks/compare.py --variants eigen``; the README's performance
section lists it per family). Ignored on GPU and TPU."""


def compiler_options(cpu_conv: str) -> dict[str, str] | None:
  """The ``jax.jit`` compiler options for ``config.cpu_conv`` on the current backend (None: defaults).

  Raises:
    ValueError: ``cpu_conv`` is not a key of :data:`CPU_CONV_IMPLS`.
  """
  if cpu_conv not in CPU_CONV_IMPLS:
    raise ValueError(f"config.cpu_conv must be one of {tuple(CPU_CONV_IMPLS)}, got {cpu_conv!r}")
  if jax.default_backend() != "cpu":
    return None
  return CPU_CONV_IMPLS[cpu_conv]


def jit_train_step(
  step_fn: Callable,
  mesh: Mesh,
  state_shardings: Any,
  *,
  donate: bool = True,
  cpu_conv: str = "ynn",
  pointwise_conv: str = "conv",
  volume_conv: str = "conv",
) -> Callable[[TrainState, Mapping[str, Any]], tuple[TrainState, dict[str, jax.Array]]]:
  """``jax.jit`` of a train step: state in/out with ``state_shardings``, batch split over ``'data'``.

  Args:
    step_fn: from :func:`make_train_step`.
    mesh: the training mesh.
    state_shardings: pytree of ``NamedSharding`` matching the state.
    donate: donate the input state's buffers (the caller must not reuse the old state).
    cpu_conv: convolution kernels on the CPU backend, a key of :data:`CPU_CONV_IMPLS`.
    pointwise_conv: how 1x1 convolutions are traced, one of
      ``semdepth_jax.models.layers.POINTWISE_IMPLS`` (``'conv'``: unchanged; ``'dot'``: matrix products).
    volume_conv: how 3-D convolutions are traced, one of ``semdepth_jax.models.layers.VOLUME_IMPLS``
      (``'conv'``: unchanged; ``'planes'``: sums of 2-D convolutions over the depth taps).

  Raises:
    ValueError: unknown ``cpu_conv``, ``pointwise_conv`` or ``volume_conv``.
  """
  from semdepth_jax.models import layers

  if pointwise_conv not in layers.POINTWISE_IMPLS:
    raise ValueError(
      f"config.pointwise_conv must be one of {layers.POINTWISE_IMPLS}, got {pointwise_conv!r}"
    )

  if volume_conv not in layers.VOLUME_IMPLS:
    raise ValueError(
      f"config.volume_conv must be one of {layers.VOLUME_IMPLS}, got {volume_conv!r}"
    )

  def traced(state, batch):
    with layers.pointwise_conv_impl(pointwise_conv), layers.volume_conv_impl(volume_conv):
      return step_fn(state, batch)

  return jax.jit(
    traced if (pointwise_conv, volume_conv) != ("conv", "conv") else step_fn,
    in_shardings=(state_shardings, batch_sharding(mesh)),
    out_shardings=(state_shardings, replicated(mesh)),
    donate_argnums=(0,) if donate else (),
    compiler_options=compiler_options(cpu_conv),
  )


def make_eval_step(
  model: nn.Module,
  update_fn: Callable[[Any, Mapping[str, Any], Mapping[str, Any]], Any],
  *,
  compute_dtype: str = "float32",
  pass_labels: bool | None = None,
) -> Callable[[Mapping[str, Any], Any, Mapping[str, Any]], Any]:
  """Builds the pure eval step ``(variables, acc, batch) -> acc``.

  Args:
    model: linen module (evaluation configuration; ``train=False``).
    update_fn: ``update_fn(acc, outputs, batch) -> acc``: adds the batch's sums to the streaming metric
      accumulators; must respect ``batch['mask']`` (padding examples count zero times).
    compute_dtype: as in :func:`make_train_step`.
    pass_labels: pass ground-truth labels to the model (default: detected).
  """
  dtype = COMPUTE_DTYPES[compute_dtype]

  def eval_fn(variables, acc, batch):
    outputs, _ = apply_model(
      model, variables, batch, train=False, compute_dtype=dtype, pass_labels=pass_labels
    )
    return update_fn(acc, outputs, batch)

  return eval_fn


def jit_eval_step(eval_fn: Callable, mesh: Mesh, variables_shardings: Any) -> Callable:
  """``jax.jit`` of an eval step; accumulators replicated, batch split over ``'data'``."""
  return jax.jit(
    eval_fn,
    in_shardings=(variables_shardings, replicated(mesh), batch_sharding(mesh)),
    out_shardings=replicated(mesh),
    donate_argnums=(1,),
  )


def shard_batch(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """Places a single-process numpy batch on the mesh (leading axis over ``'data'``).

  Multi-process runs use the pipeline's ``make_global_batch`` instead, which assembles per-process shards
  into global arrays.
  """
  sharding: NamedSharding = batch_sharding(mesh)
  return {k: jax.device_put(v, sharding) for k, v in device_batch(batch).items()}


class StreamingEvaluator:
  """Streaming depth + segmentation metrics for the train loop (``semdepth_jax.metrics`` accumulators).

  Depth: the model's ``depth`` (B, h, w, 1) is converted to metres (paper 000's inverted normalised output
  via ``depth_bins.from_inverted_normalised`` with ``depth_norm``), bilinearly resized to the ground-truth
  size and accumulated with ``metrics.DepthAccumulator`` (the dataset's ``min_depth``/``max_depth``/
  ``eval_crop``; per-image averages, model_spec §8.1). Segmentation: argmax of ``seg_logits``, nearest
  resize, ``metrics.SegAccumulator`` confusion matrix (§8.3). Padding examples (``mask`` False) and examples
  without depth / labels (``has_depth`` / ``has_segmentation`` False) count zero times. Heads the model does
  not output are skipped.

  Args:
    num_classes: segmentation classes.
    ignore_index: label ignore value.
    min_depth: metres, exclusive lower validity bound.
    max_depth: metres, exclusive upper bound (and prediction clamp), or None.
    crop: crop preset name of ``semdepth_jax.metrics`` or None.
    depth_output: ``'metres'`` or ``'inverted_normalised'``.
    depth_norm: metres, saturation distance of the inverted normalised output (required for it).

  Raises:
    ValueError: ``inverted_normalised`` without ``depth_norm``.
  """

  def __init__(
    self,
    *,
    num_classes: int,
    ignore_index: int = 255,
    min_depth: float = 1e-3,
    max_depth: float | None = None,
    crop: Any = None,
    depth_output: str = "metres",
    depth_norm: float | None = None,
  ):
    from semdepth_jax import metrics
    from semdepth_jax.models import contract

    contract.check_depth_output(depth_output, depth_norm, "StreamingEvaluator")
    self.depth_output = depth_output
    self.depth_norm = depth_norm
    self.depth_acc = metrics.DepthAccumulator(min_depth=min_depth, max_depth=max_depth, crop=crop)
    self.seg_acc = metrics.SegAccumulator(num_classes=num_classes, ignore_index=ignore_index)
    self._depth_keys = metrics.DEPTH_METRIC_KEYS
    self._seg_keys = metrics.SEG_METRIC_KEYS

  def init(self) -> dict[str, Any]:
    """Zero accumulators ``{'depth': DepthStats, 'seg': SegStats}``."""
    return {"depth": self.depth_acc.init(), "seg": self.seg_acc.init()}

  def depth_in_metres(self, depth: jax.Array) -> jax.Array:
    """(B, h, w[, 1]) model depth -> (B, h, w) metres (``semdepth_jax.models.contract``)."""
    from semdepth_jax.models import contract

    return contract.depth_to_metres(depth, self.depth_output, self.depth_norm)

  def update(self, acc: Any, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> Any:
    """Adds one batch (jittable)."""
    mask = batch.get("mask")
    if mask is None:
      mask = jnp.ones(batch["image"].shape[:1], bool)
    acc = dict(acc)
    if "depth" in outputs:
      gt = batch["depth"]
      pred = resize.bilinear(self.depth_in_metres(outputs["depth"]), gt.shape[1:3])
      m = mask & batch.get("has_depth", jnp.ones_like(mask))
      acc["depth"] = self.depth_acc.update(acc["depth"], pred, gt, m)
    if "seg_logits" in outputs:
      gt = batch["segmentation"]
      labels = jnp.argmax(outputs["seg_logits"], axis=-1).astype(jnp.int32)
      labels = resize.nearest(labels, gt.shape[1:3])
      m = mask & batch.get("has_segmentation", jnp.ones_like(mask))
      acc["seg"] = self.seg_acc.update(acc["seg"], labels, gt, m)
    return acc

  def finish(self, acc: Any) -> dict[str, float]:
    """Final metrics (host side).

    Returns:
      ``metrics.DEPTH_METRIC_KEYS`` and ``pixel_acc``, ``mean_class_acc``, ``miou``, ``fw_iou``; the keys
      of a head with nothing accumulated are left out.
    """
    out: dict[str, float] = {}
    if int(self.depth_acc.counts(acc["depth"])["num_images"]) > 0:
      d = self.depth_acc.finish(acc["depth"])
      out.update({k: d[k] for k in self._depth_keys})
    if int(np.asarray(acc["seg"].num_examples)) > 0:
      confusion = np.asarray(jax.device_get(acc["seg"].confusion["lo"]))
      if confusion.sum() > 0 or int(np.asarray(acc["seg"].confusion["hi"]).sum()) > 0:
        s = self.seg_acc.finish(acc["seg"])
        out.update({k: float(s[k]) for k in self._seg_keys})
    return out

  @classmethod
  def for_model(
    cls, model: nn.Module, meta: Any, *, num_classes: int, depth_norm: float | None = None
  ) -> StreamingEvaluator:
    """An evaluator for ``model`` on a dataset described by ``meta`` (``semdepth_jax.data.meta``).

    Depth units come from the model (``depth_output``, ``depth_norm``); ``depth_norm`` here is the fallback
    for models that do not declare it.
    """
    depth_norm = getattr(model, "depth_norm", None) or depth_norm
    return cls(
      num_classes=num_classes,
      ignore_index=meta.ignore_index,
      min_depth=meta.min_depth,
      max_depth=meta.max_depth,
      crop=meta.eval_crop,
      depth_output=getattr(model, "depth_output", "metres"),
      depth_norm=depth_norm,
    )


def make_batch_stats_probe(
  model: nn.Module, *, compute_dtype: str = "float32", pass_labels: bool | None = None
) -> Callable[[Mapping[str, Any], Mapping[str, Any], jax.Array], Any]:
  """Builds ``probe(variables, batch, rng) -> per-batch BatchNorm statistics`` (pure, jittable).

  Flax's ``BatchNorm`` updates ``ra = m * ra + (1 - m) * batch_stat`` in train mode. Running the model
  twice in train mode with the running statistics set to 0 and to 1 gives ``s0 = (1 - m) * b`` and
  ``s1 = m + (1 - m) * b``, hence ``m = s1 - s0`` and the batch's own statistic ``b = s0 / (1 - m)``, for
  every BatchNorm layer and whatever its momentum. Layers that did not run (``s1 - s0 = 1``) return their
  current value. Used by :func:`semdepth_jax.train.loop` to recompute population statistics after short
  training runs ("precise BN", Wu & Johnson 2021): with Keras' momentum 0.99 (paper 000) the running
  averages of a few hundred steps still remember the initial (0, 1) values.
  """
  dtype = COMPUTE_DTYPES[compute_dtype]
  if pass_labels is None:
    pass_labels = accepts_labels(model)

  def probe(variables, batch, rng):
    stats = variables["batch_stats"]
    outs = []
    for fill in (0.0, 1.0):
      v = dict(variables)
      v["batch_stats"] = jax.tree.map(lambda x, f=fill: jnp.full_like(x, f), stats)
      _, new = apply_model(
        model, v, batch, train=True, rng=rng, compute_dtype=dtype, pass_labels=pass_labels
      )
      outs.append(new)

    def solve(s0, s1, cur):
      keep = 1.0 - (s1 - s0)
      ok = keep > 1e-6
      return jnp.where(ok, s0 / jnp.where(ok, keep, 1.0), cur)

    return jax.tree.map(solve, outs[0], outs[1], stats)

  return probe
