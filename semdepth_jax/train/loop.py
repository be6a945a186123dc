"""The training loop: stages, sharded steps, resume from the workdir, logging and periodic evaluation.

``train(config, workdir)`` runs the config's stages in ``stage_order``. Everything needed to continue is
in ``workdir``: ``checkpoints/<step>/`` (train state + JSON meta with the stage and the data-iterator
state), ``config.json``, ``metrics.jsonl`` and TensorBoard events in ``tb/``. Calling ``train`` again with
the same workdir continues from the latest checkpoint (an interrupted run and an uninterrupted run reach the
same parameters: the data stream, dropout keys and steps are functions of the step number).

Stages (SSegDep-Net's two-stage schedule, model_spec §1.5): the parameters are created once from the base
model (``config.model``), each stage builds its own model (``config.model`` + ``stage.model`` overrides),
loss, optimiser (fresh state), frozen-parameter mask and data iterator (its own batch size). Evaluation
always runs the base model (for SSegDep-Net: the full inference path U-Net -> OHESS -> 3D CNN-UP).

The pieces that touch other modules (model registry, losses, input pipeline, metrics) come through
:class:`Components`, so tests can run the generic loop with a toy model and in-memory data.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from semdepth_jax.data.meta import get_meta
from semdepth_jax.train import checkpoint as ckpt_lib
from semdepth_jax.train import config_utils, optim
from semdepth_jax.train import logging as log_lib
from semdepth_jax.train import mesh as mesh_lib
from semdepth_jax.train import step as step_lib
from semdepth_jax.train.state import TrainState, create_state, param_count, split_variables

_log = logging.getLogger(__name__)


class Evaluator(Protocol):
  """Streaming evaluation metrics (accumulated inside jit, finished on the host)."""

  def init(self) -> Any:
    """Returns the zero accumulator pytree."""

  def update(self, acc: Any, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> Any:
    """Adds one batch (respecting ``batch['mask']``); jittable."""

  def finish(self, acc: Any) -> dict[str, float]:
    """Turns the accumulated sums into metric values (host)."""


@dataclasses.dataclass
class Components:
  """What the loop needs from the rest of the library (defaults: :func:`default_components`).

  Attributes:
    build_model: ``kwargs -> linen Module``; kwargs hold ``name`` and the constructor arguments.
    build_loss: stage ``loss`` spec -> ``loss_fn(outputs, batch) -> (total, aux)``.
    train_iterator: ``(global_batch_size, seed) -> iterator`` of per-process numpy batches with
      ``get_state()`` / ``set_state()``.
    num_train_examples: ``() -> int`` size of the train split (for ``num_epochs`` stages).
    make_evaluation: ``(model, mesh, variables_shardings, settings=None) -> EvalRunner``, the periodic /
      final evaluation (default: ``semdepth_jax.evaluate.Evaluation``, the library's one evaluation path;
      ``settings`` of a named ``config.evals`` entry, None = ``config.eval``), or None.
    eval_iterator: for tests with in-memory data: ``() -> iterator`` of padded eval batches (with
      ``mask``); used with ``make_evaluator`` when ``make_evaluation`` is None.
    make_evaluator: ``model -> Evaluator`` (with ``eval_iterator``).
    main_eval: run ``config.eval`` (False when its split is empty; named ``config.evals`` still run).
    fault_hook: tests only: called as ``fault_hook(point, step)`` at ``"step"`` (after a train step),
      ``"checkpoint"`` / ``"checkpoint_written"`` (before / after starting a save), ``"eval"`` (before an
      evaluation) and ``"eval_written"`` (its results logged, not yet recorded as done); raising there
      simulates a kill at that point.
  """

  build_model: Callable[[dict[str, Any]], nn.Module]
  build_loss: Callable[[Any], step_lib.LossFn]
  train_iterator: Callable[[int, int], Iterator]
  num_train_examples: Callable[[], int] | None = None
  make_evaluation: Callable[..., EvalRunner] | None = None
  eval_iterator: Callable[[], Iterator] | None = None
  make_evaluator: Callable[[nn.Module], Evaluator] | None = None
  main_eval: bool = True
  fault_hook: Callable[[str, int], None] | None = None

  def fault(self, point: str, step: int) -> None:
    """Calls :attr:`fault_hook` if set (fault-injection tests)."""
    if self.fault_hook is not None:
      self.fault_hook(point, int(step))

  @property
  def has_eval(self) -> bool:
    """Whether the run's main evaluation (``config.eval``) runs."""
    return self.main_eval and (
      self.make_evaluation is not None
      or (self.eval_iterator is not None and self.make_evaluator is not None)
    )

  def evaluation(
    self, model: nn.Module, mesh: Any, variables_shardings: Any, config: Any
  ) -> EvalRunner:
    """The :class:`EvalRunner` of ``model`` (compiled once per run)."""
    if self.make_evaluation is not None:
      return self.make_evaluation(model, mesh, variables_shardings)
    return IteratorEvaluation(
      model,
      self.eval_iterator,
      self.make_evaluator(model),
      mesh,
      compute_dtype=config.compute_dtype,
      variables_shardings=variables_shardings,
      max_batches=int(config.eval.max_batches),
    )


class EvalRunner(Protocol):
  """A compiled evaluation (``semdepth_jax.evaluate.Evaluation`` or :class:`IteratorEvaluation`)."""

  def run(self, variables: Any) -> dict[str, Any]:
    """Evaluates ``variables``; returns a report (nested dict)."""

  def scalars(self, report: Mapping[str, Any]) -> dict[str, float]:
    """The report's headline numbers, flat (logged to metrics.jsonl / TensorBoard)."""

  def iterator(self) -> Iterator:
    """A fresh iterator of host eval batches (for image summaries)."""


class IteratorEvaluation:
  """:class:`EvalRunner` over an ``eval_iterator`` factory and an :class:`Evaluator` (tests, toy data)."""

  def __init__(
    self,
    model,
    eval_iterator,
    evaluator,
    mesh,
    *,
    compute_dtype="float32",
    variables_shardings=None,
    max_batches=0,
  ):
    self._iterator = eval_iterator
    self._max_batches = int(max_batches)
    self._run = make_evaluate_fn(
      model, evaluator, mesh, compute_dtype=compute_dtype, variables_shardings=variables_shardings
    )

  def run(self, variables: Any) -> dict[str, Any]:
    """The evaluator's ``finish`` dict."""
    return self._run(variables, self._iterator(), self._max_batches)

  def scalars(self, report: Mapping[str, Any]) -> dict[str, float]:
    """The scalar entries of the report."""
    return {k: float(v) for k, v in report.items() if np.isscalar(v)}

  def iterator(self) -> Iterator:
    """A fresh eval iterator."""
    return self._iterator()


@dataclasses.dataclass(frozen=True)
class StagePlan:
  """One stage with its global step range ``[start, end)``."""

  index: int
  name: str
  cfg: Any
  start: int
  end: int

  @property
  def num_steps(self) -> int:
    """Batches trained in this stage."""
    return self.end - self.start


@dataclasses.dataclass
class TrainResult:
  """What :func:`train` returns.

  Attributes:
    state: final train state (on the mesh).
    step: final global step.
    eval_metrics: metrics of the last evaluation (empty if none ran).
    model: the base model (``config.model``; the inference configuration).
    workdir: the workdir.
    stopped_early: True when ``stop_at_step`` ended the run before the last stage finished.
    stage_seconds: wall time of each stage trained in this call (name -> seconds, evaluations included).
  """

  state: TrainState
  step: int
  eval_metrics: dict[str, float]
  model: nn.Module
  workdir: str
  stopped_early: bool = False
  stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# config -> pieces


def resolved_num_classes(config: Any) -> int:
  """``config.num_classes`` or, when None, the dataset's ``get_meta(dataset).num_classes``."""
  if config.num_classes is not None:
    return int(config.num_classes)
  return get_meta(config.dataset).num_classes


def model_kwargs(config: Any, stage_cfg: Any | None = None) -> dict[str, Any]:
  """``config.model`` (+ the stage's ``model`` overrides) as constructor kwargs incl. ``name``.

  ``num_classes`` is filled in from :func:`resolved_num_classes` unless the config sets it; a model with
  paper 000's ``inverted_normalised`` depth and no ``depth_norm`` (workdirs written before models declared
  it) gets the one its loss terms use (:func:`depth_norm_of`).
  """
  kwargs = config_utils.to_dict(config.model)
  if stage_cfg is not None:
    kwargs.update(config_utils.to_dict(stage_cfg.model))
  kwargs.setdefault("num_classes", resolved_num_classes(config))
  if kwargs.get("depth_output") == "inverted_normalised" and kwargs.get("depth_norm") is None:
    kwargs["depth_norm"] = depth_norm_of(config)
  return {k: _tuples(v) for k, v in kwargs.items()}


def _tuples(value: Any) -> Any:
  """Lists (JSON round trips of tuples) become tuples, also inside nested sub-configs."""
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return value


def plan_stages(
  config: Any, num_train_examples: Callable[[], int] | None = None
) -> list[StagePlan]:
  """Resolves ``stage_order`` into global step ranges (``num_epochs`` -> ``ceil(E * N / batch)``).

  Raises:
    ValueError: a ``num_epochs`` stage without a known train-split size, or no stage with steps.
  """
  plans, start = [], 0
  for i, name in enumerate(config.stage_order):
    st = config.stages[name]
    steps = int(st.num_steps)
    if not steps and st.num_epochs:
      if num_train_examples is None:
        raise ValueError(f"stage {name!r} gives num_epochs but the train split size is unknown")
      steps = math.ceil(float(st.num_epochs) * num_train_examples() / int(st.batch_size))
    plans.append(StagePlan(i, name, st, start, start + steps))
    start += steps
  if start == 0:
    raise ValueError("every stage has 0 steps; set num_steps (or steps=N) for at least one stage")
  return plans


def depth_norm_of(config: Any) -> float | None:
  """The ``depth_norm`` (metres) of the config's inverted-normalised depth loss terms, or None.

  Paper 000's depth nets predict ``1 - min(d / depth_norm, 1)``; evaluation inverts it with the same
  ``depth_norm`` the loss used (docs/model_spec.md §1.0).

  Raises:
    ValueError: stages disagree on ``depth_norm``.
  """
  norms = set()
  for name in config.stage_order:
    for term in config_utils.to_dict(config.stages[name].loss).values():
      if isinstance(term, Mapping) and term.get("target") == "inverted_normalised":
        norms.add(float(term["depth_norm"]))
  if len(norms) > 1:
    raise ValueError(f"stages use different depth_norm values {sorted(norms)} for inverted depth")
  return norms.pop() if norms else None


def _augment_dict(config: Any) -> dict[str, Any]:
  return {
    k: (tuple(v) if isinstance(v, list) else v)
    for k, v in config_utils.to_dict(config.augment).items()
  }


def default_loss_builder(config: Any) -> Callable[[Any], step_lib.LossFn]:
  """``spec -> loss_fn`` with the dataset's ignore index and depth range (``losses.build_loss``)."""
  from semdepth_jax import losses

  meta = get_meta(config.dataset)
  metas = [meta] + [get_meta(d) for d, _ in train_mixture(config)]
  # A mixture trains on every member's valid depth: the loss's range spans them all (None = no cap).
  caps = [m.max_depth for m in metas]
  max_depth = None if any(c is None for c in caps) else max(caps)
  min_depth = min(m.min_depth for m in metas)

  def build_loss(spec):
    return losses.build_loss(
      config_utils.to_dict(spec),
      ignore_index=meta.ignore_index,
      min_depth=min_depth,
      max_depth=max_depth,
    )

  return build_loss


def default_components(config: Any) -> Components:
  """Components backed by the library: model registry, losses, the TFDS/grain pipeline and metrics."""
  from semdepth_jax.data import pipeline
  from semdepth_jax.models import get_model

  meta = get_meta(config.dataset)
  data_dir = config.data_dir or None

  def build_model(kwargs):
    kwargs = dict(kwargs)
    return get_model(kwargs.pop("name"), **kwargs)

  build_loss = default_loss_builder(config)
  augment = _augment_dict(config)

  mixture = train_mixture(config)

  def train_iterator(batch_size, seed):
    if mixture:
      return pipeline.make_mixture_train_iterator(
        mixture,
        data_dir=data_dir,
        split=config.train_split,
        batch_size=batch_size,
        image_size=tuple(config.image_size),
        seed=seed,
        augment=augment,
        num_classes=resolved_num_classes(config),
        num_threads=config.data.num_threads,
        prefetch=config.data.prefetch,
        worker_count=config.data.worker_count,
      )
    return pipeline.make_train_iterator(
      config.dataset,
      data_dir=data_dir,
      split=config.train_split,
      batch_size=batch_size,
      image_size=tuple(config.image_size),
      seed=seed,
      augment=augment,
      num_threads=config.data.num_threads,
      prefetch=config.data.prefetch,
      worker_count=config.data.worker_count,
    )

  def num_train_examples():
    return pipeline.num_examples(config.dataset, config.train_split, data_dir)

  def make_evaluation(model, mesh, variables_shardings, settings=None):
    from semdepth_jax import evaluate

    return evaluate.Evaluation(
      model,
      config,
      settings or eval_settings(config),
      mesh=mesh,
      data_dir=data_dir,
      variables_shardings=variables_shardings,
    )

  has_eval = bool(config.eval.split) and config.eval.split in meta.splits
  return Components(
    build_model=build_model,
    build_loss=build_loss,
    train_iterator=train_iterator,
    num_train_examples=num_train_examples,
    make_evaluation=make_evaluation,
    main_eval=has_eval,
  )


def eval_settings(config: Any, name: str | None = None):
  """``config.eval`` (or the named ``config.evals[name]``) as ``semdepth_jax.evaluate.EvalSettings``."""
  from semdepth_jax import evaluate

  if name is None:
    size = config.eval.image_size
    return evaluate.EvalSettings(
      split=config.eval.split,
      protocol=config.eval.get("protocol") or None,
      image_size=None if size is None else tuple(size),
      batch_size=int(config.eval.batch_size),
      max_batches=int(config.eval.max_batches),
    )
  e = config.evals[name]
  return evaluate.EvalSettings(
    split=e.split,
    dataset=e.get("dataset") or None,
    protocol=e.get("protocol") or None,
    batch_size=int(e.get("batch_size") or config.eval.batch_size),
    max_batches=int(e.get("max_batches") or 0),
  )


def named_evals(config: Any) -> dict[str, Any]:
  """``config.evals`` as ``{name: entry}`` (empty for configs written before it existed)."""
  evals = config.get("evals")
  return {} if not evals else {k: evals[k] for k in evals}


def train_mixture(config: Any) -> tuple[tuple[str, float], ...]:
  """``config.train_mixture`` as ``((dataset, weight), ...)``; empty = train on ``config.dataset`` only.

  Raises:
    ValueError: a malformed entry or a non-positive weight (names the entry).
  """
  out = []
  for item in config.get("train_mixture") or ():
    try:
      name, weight = item
      weight = float(weight)
    except (TypeError, ValueError):
      raise ValueError(
        f"config.train_mixture entries must be (dataset, weight) pairs, got {item!r}"
      ) from None
    if not weight > 0:
      raise ValueError(f"config.train_mixture: weight of {name!r} must be > 0, got {weight}")
    out.append((str(name), weight))
  return tuple(out)


def check_consumers(config: Any) -> None:
  """Builds (without running) what every stage needs, so a typo fails before training starts.

  Constructs each stage's model (``get_model`` rejects unknown attributes), its loss (``build_loss``
  rejects unknown term keys), the optimiser/schedule settings and the augmentation settings.

  Raises:
    KeyError / TypeError / ValueError: from the consumer that rejects a value; the message names it.
  """
  from semdepth_jax.data import transforms
  from semdepth_jax.models import get_model

  comps_loss = default_loss_builder(config)
  transforms.check_augment(_augment_dict(config))
  kw = model_kwargs(config)
  get_model(kw.pop("name"), **kw)
  for name in config.stage_order:
    st = config.stages[name]
    kw = model_kwargs(config, st)
    try:
      get_model(kw.pop("name"), **kw)
      if st.num_steps or st.num_epochs:
        comps_loss(st.loss)
      optim.make_schedule(st.schedule, float(st.optimizer.learning_rate), max(int(st.num_steps), 1))
      optim.make_optimizer(st.optimizer, optim.make_schedule({"name": "constant"}, 1.0, 1))
    except (KeyError, TypeError, ValueError) as e:
      msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
      raise type(e)(f"config.stages.{name}: {msg}") from None


def ensure_dataset(
  dataset: str, data_dir: str | None = None, *, manual_dir: str | os.PathLike | None = None
) -> None:
  """Makes sure ``dataset`` is built in ``data_dir``; builds the embedded ``synthetic_city`` if needed.

  Args:
    dataset: TFDS name (``replica``, ``synthetic_city/tiny`` ...).
    data_dir: TFDS data dir (None = TFDS default).
    manual_dir: the downloaded files of a dataset that needs them (as ``semdepth data build
      --manual_dir``); used only when the dataset is not built yet.

  Raises:
    FileNotFoundError: a dataset that needs manual files is not built and no ``manual_dir`` was given,
      or any unbuilt dataset in a multi-process run; the message holds the exact ``semdepth data build``
      command.
    KeyError: unknown dataset.
  """
  import tensorflow_datasets as tfds

  from semdepth_jax.data import pipeline

  builder = pipeline.get_builder(dataset, data_dir)
  if builder.is_prepared():
    return
  base = dataset.split(":")[0].split("/")[0]
  if base not in AUTO_BUILD_DATASETS and manual_dir is None:
    raise FileNotFoundError(
      f"dataset {dataset!r} is not built in {data_dir or pipeline.default_data_dir()}. Build it with:\n"
      f"  {pipeline.build_command(dataset, data_dir)}"
    )
  from semdepth_jax.data.cli import _manual_dir_problem, remove_stale_incomplete

  problem = None if manual_dir is None else _manual_dir_problem(os.fspath(manual_dir))
  if problem:
    raise FileNotFoundError(
      f"manual_dir {os.fspath(manual_dir)}: expected a folder holding the downloaded files of "
      f"{dataset}, got {problem}"
    )
  if jax.process_count() > 1:
    raise FileNotFoundError(
      f"dataset {dataset!r} is not built in {data_dir or pipeline.default_data_dir()}; a run of "
      f"{jax.process_count()} processes does not build it (each would write the same files). Build it "
      f"once first:\n  {pipeline.build_command(dataset, data_dir)}"
    )
  removed = remove_stale_incomplete(builder)
  if removed:
    _log.info("%s", removed)
  _log.info("building %s into %s (first use)", dataset, builder.data_dir)
  builder.download_and_prepare(
    file_format="array_record",  # readable without TensorFlow (docs/environment_notes.md)
    download_config=tfds.download.DownloadConfig(
      manual_dir=None if manual_dir is None else os.fspath(manual_dir), try_download_gcs=False
    ),
  )


AUTO_BUILD_DATASETS = ("synthetic_city",)
"""Datasets that need no downloaded files and are built automatically on first use."""


def format_metrics(metrics: Mapping[str, float]) -> str:
  """One metric per line, ``name  value`` (4 significant digits), sorted by name."""
  return "\n".join(f"  {k:<16s}{v:.4g}" for k, v in sorted(metrics.items()) if np.isscalar(v))


# ----------------------------------------------------------------------------------------------------------
# state construction


def _init_inputs(config: Any, model: nn.Module) -> tuple[jax.Array, dict[str, Any]]:
  h, w = tuple(config.image_size)
  image = jnp.zeros((1, h, w, 3), jnp.float32)
  kwargs: dict[str, Any] = {"train": False}
  if step_lib.accepts_labels(model):
    kwargs["labels"] = jnp.zeros((1, h, w), jnp.int32)
  return image, kwargs


@dataclasses.dataclass
class _Stage:
  plan: StagePlan
  model: nn.Module
  tx: Any
  schedule: Any
  trainable: Any
  trainable_stats: Any
  loss_fn: step_lib.LossFn


def _make_stage(
  config: Any, plan: StagePlan, comps: Components, abstract_params: Any, abstract_stats: Any
) -> _Stage:
  st = plan.cfg
  model = comps.build_model(model_kwargs(config, st))
  accum = int(st.optimizer.grad_accum_steps)
  schedule = optim.make_schedule(
    st.schedule, float(st.optimizer.learning_rate), max(plan.num_steps // accum, 1)
  )
  trainable = optim.path_mask(abstract_params, st.trainable)
  if not any(jax.tree.leaves(trainable)):
    raise ValueError(
      f"config.stages.{plan.name}.trainable={st.trainable!r} matches no parameter path; "
      f"example paths: {_example_paths(abstract_params)}"
    )
  trainable_stats = optim.path_mask(abstract_stats, st.trainable) if abstract_stats else None
  tx = optim.make_optimizer(st.optimizer, schedule, trainable)
  loss_fn = comps.build_loss(st.loss)
  return _Stage(plan, model, tx, schedule, trainable, trainable_stats, loss_fn)


def _example_paths(tree: Any, n: int = 5) -> list[str]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [mesh_lib.path_to_str(p) for p, _ in leaves[:n]]


class _StateFactory:
  """Creates (abstract or concrete) train states with the configured shardings."""

  def __init__(self, config: Any, base_model: nn.Module, mesh: Any):
    self.config = config
    self.base_model = base_model
    self.mesh = mesh
    self.rules = [tuple(r) for r in config.param_sharding]
    image, kwargs = _init_inputs(config, base_model)
    self._image, self._kwargs = image, kwargs
    variables = jax.eval_shape(self._init_variables, jax.random.PRNGKey(0))
    self.abstract_params, self.abstract_stats = split_variables(variables)

  def _init_variables(self, rng):
    init_rng, dropout_rng = jax.random.split(rng)
    return self.base_model.init(
      {"params": init_rng, "dropout": dropout_rng}, self._image, **self._kwargs
    )

  def _state_fn(self, tx):
    # The seed's key is an argument, not a constant of the traced function, so every seed compiles to the
    # same program (one compilation, shared through JAX's persistent cache across seed sweeps).
    def make(rng, params=None, batch_stats=None, step=0):
      if params is None:
        params, batch_stats = split_variables(self._init_variables(jax.random.fold_in(rng, 1)))
      return create_state(params, batch_stats, tx.init(params), jax.random.fold_in(rng, 2), step)

    return make

  def shardings(self, abstract_state: Any) -> Any:
    specs = mesh_lib.param_partition_specs(abstract_state, self.rules, self.mesh)
    return mesh_lib.tree_shardings(self.mesh, specs)

  def abstract(self, tx) -> tuple[Any, Any]:
    """(abstract state with shardings, state shardings) for optimiser ``tx``."""
    abstract = jax.eval_shape(self._state_fn(tx), jax.random.PRNGKey(0))
    shardings = self.shardings(abstract)
    abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    return abstract, shardings

  def fresh(self, tx) -> tuple[TrainState, Any]:
    """A newly initialised state on the mesh: params from the seed, then ``config.model_init`` if set."""
    _, shardings = self.abstract(tx)
    make = jax.jit(self._state_fn(tx), out_shardings=shardings)
    rng = jax.random.PRNGKey(int(self.config.seed))
    state = make(rng)
    init = self.config.get("model_init")
    if init is not None and init.get("path"):
      variables = load_model_init(init, mesh_lib.host_tree(state.variables()))
      state = make(rng, variables["params"], variables.get("batch_stats", {}))
    return state, shardings

  def with_new_optimizer(self, state: TrainState, tx) -> tuple[TrainState, Any]:
    """Keeps params / statistics / step / rng of ``state``, fresh optimiser state for ``tx``."""
    _, shardings = self.abstract(tx)

    def make(params, batch_stats, step, rng):
      return create_state(params, batch_stats, tx.init(params), rng, 0).replace(step=step)

    new = jax.jit(make, out_shardings=shardings)(
      state.params, state.batch_stats, state.step, state.rng
    )
    return new, shardings


def build_model(config: Any, stage_cfg: Any | None = None) -> nn.Module:
  """The registered model of ``config`` (``config.model`` + the stage's overrides; see :func:`model_kwargs`)."""
  from semdepth_jax.models import get_model

  kwargs = model_kwargs(config, stage_cfg)
  return get_model(kwargs.pop("name"), **kwargs)


def abstract_variables(config: Any, model: nn.Module | None = None) -> dict[str, Any]:
  """Shapes and dtypes (``jax.ShapeDtypeStruct``) of ``{'params', 'batch_stats'}`` of the config's model."""
  model = model if model is not None else build_model(config)
  image, kwargs = _init_inputs(config, model)
  variables = jax.eval_shape(
    lambda r: model.init({"params": r, "dropout": r}, image, **kwargs), jax.random.PRNGKey(0)
  )
  params, stats = split_variables(variables)
  return {"params": params, "batch_stats": stats}


def initial_variables(config: Any, components: Components | None = None) -> dict[str, Any]:
  """The variables a fresh run of ``config`` starts from (``config.seed``; ``model_init`` applied), on host.

  For tests and studies of the initialisation (e.g. perturbing it and training again through
  ``config.model_init``).
  """
  comps = components or default_components(config)
  model = comps.build_model(model_kwargs(config))
  mesh = mesh_lib.make_mesh(tuple(config.mesh_shape))
  factory = _StateFactory(config, model, mesh)
  first = plan_stages(config, comps.num_train_examples)[0]
  stage = _make_stage(config, first, comps, factory.abstract_params, factory.abstract_stats)
  state, _ = factory.fresh(stage.tx)
  return jax.device_get(state.variables())


def load_model_init(init: Any, variables: Any) -> dict[str, Any]:
  """Merges the pretrained weights of ``config.model_init`` into freshly initialised ``variables``.

  ``init.path`` is a converted-weights directory (``semdepth convert-weights``, or
  ``semdepth_jax.weights.convert.save_variables``); its variables replace the subtree ``init.prefix`` of the
  model's (``''`` = the whole tree), except paths matching a regex of ``init.exclude`` (e.g. a classifier).

  Raises:
    semdepth_jax.weights.convert.WeightsFileError: unreadable directory.
    semdepth_jax.weights.convert.PretrainedMismatchError: missing / unexpected paths or shape mismatches
      (every path with expected and actual shapes, in one message).
  """
  from semdepth_jax.weights import convert

  pretrained, _ = convert.load_converted(init.path)
  merged = convert.merge_pretrained(
    variables,
    pretrained,
    prefix=str(init.get("prefix") or ""),
    exclude=tuple(init.get("exclude") or ()),
  )
  _log.info("initialised %s from %s", init.get("prefix") or "the model", init.path)
  return merged


# ----------------------------------------------------------------------------------------------------------
# evaluation


def make_evaluate_fn(
  model: nn.Module,
  evaluator: Evaluator,
  mesh: Any,
  *,
  compute_dtype: str = "float32",
  variables_shardings: Any = None,
) -> Callable[..., dict[str, float]]:
  """Compiles the evaluation of ``model`` once; returns ``run(variables, eval_iterator, max_batches=0)``.

  ``run`` feeds every batch of the iterator (per-process padded batches with ``mask``; padding examples
  count zero times) through the jitted ``evaluator.update`` and returns ``evaluator.finish(acc)``.

  Args:
    model: linen module (``train=False`` is used).
    evaluator: accumulators (:class:`Evaluator`).
    mesh: the mesh (batches split over ``'data'``).
    compute_dtype: float32 or bfloat16.
    variables_shardings: shardings of the variables dict (default: replicated).
  """
  from semdepth_jax.data.pipeline import make_global_batch

  eval_fn = step_lib.make_eval_step(model, evaluator.update, compute_dtype=compute_dtype)
  in_vars = variables_shardings if variables_shardings is not None else mesh_lib.replicated(mesh)
  jitted = jax.jit(
    eval_fn,
    in_shardings=(in_vars, mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)),
    out_shardings=mesh_lib.replicated(mesh),
  )

  def run(variables: Any, eval_iterator: Iterator, max_batches: int = 0) -> dict[str, float]:
    acc = jax.device_put(evaluator.init(), mesh_lib.replicated(mesh))
    with jax.set_mesh(mesh):
      for i, batch in enumerate(eval_iterator):
        if max_batches and i >= max_batches:
          break
        acc = jitted(variables, acc, make_global_batch(step_lib.device_batch(batch), mesh))
    return evaluator.finish(jax.device_get(acc))

  return run


def evaluate(
  model: nn.Module,
  variables: Any,
  eval_iterator: Iterator,
  evaluator: Evaluator,
  mesh: Any,
  *,
  max_batches: int = 0,
  compute_dtype: str = "float32",
) -> dict[str, float]:
  """One-off evaluation (see :func:`make_evaluate_fn`); ``variables`` = ``state.variables()``."""
  run = make_evaluate_fn(model, evaluator, mesh, compute_dtype=compute_dtype)
  return run(variables, eval_iterator, max_batches)


# ----------------------------------------------------------------------------------------------------------
# the loop


def _batch_size_check(plan: StagePlan, mesh: Any) -> None:
  mesh_lib.check_batch_divisible(
    int(plan.cfg.batch_size), mesh, what=f"config.stages.{plan.name}.batch_size"
  )


def _prepare_workdir(config: Any, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() != 0:
    return  # process 0 alone reads and rewrites config.json (another could read it half-written)
  path = os.path.join(workdir, "config.json")
  current = config_utils.to_dict(config)
  if os.path.exists(path):
    previous = config_utils.load_json(path)
    changed = config_utils.diff(previous, current)
    if changed:
      _log.warning("config differs from the one in %s: %s", path, ", ".join(changed))
  config_utils.save_json(config, path)


def train(
  config: ml_collections.ConfigDict,
  workdir: str | os.PathLike,
  *,
  components: Components | None = None,
  stop_at_step: int | None = None,
) -> TrainResult:
  """Trains (or resumes training) according to ``config``, writing everything into ``workdir``.

  Resuming: the newest intact checkpoint is restored (damaged newer ones are reported and moved aside,
  see ``Checkpointer.latest_intact_step``); ``metrics.jsonl`` is cut back to what that checkpoint had
  produced (the averaging window of the train log is part of the checkpoint), and any evaluation due at
  its step that had not completed runs first. So after any number of interruptions the parameters,
  the logged values and the set of evaluations equal those of an uninterrupted run.

  Args:
    config: a validated config (``config_utils.load_config`` or a config file's ``get_config``).
    workdir: output folder; if it holds checkpoints, training continues from the latest one.
    components: overrides of the library pieces (tests); default :func:`default_components`.
    stop_at_step: stop right after this global step without a final save (simulates an interruption;
      tests and time-boxed runs). None = run all stages.

  Returns:
    A :class:`TrainResult`.

  Raises:
    FloatingPointError: loss or gradient norm became NaN/inf (names the step and the checkpoint, if any,
      that predates it).
    FileNotFoundError: the dataset is not built (message includes the ``semdepth data build`` command).
    checkpoint.CheckpointMismatchError: the workdir's checkpoint does not fit the config (names leaves).
    ValueError: inconsistent config (batch size vs mesh, stage patterns, ...).
  """
  workdir = os.fspath(os.path.abspath(workdir))
  mesh_lib.maybe_initialize_distributed(bool(config.distributed))
  comps = components or default_components(config)
  mesh = mesh_lib.make_mesh(tuple(config.mesh_shape))
  plans = plan_stages(config, comps.num_train_examples)
  for plan in plans:
    if plan.num_steps:
      _batch_size_check(plan, mesh)
  if comps.has_eval:
    mesh_lib.check_batch_divisible(int(config.eval.batch_size), mesh, what="config.eval.batch_size")
  final_step = plans[-1].end
  _prepare_workdir(config, workdir)
  is_main = jax.process_index() == 0

  base_model = comps.build_model(model_kwargs(config))
  factory = _StateFactory(config, base_model, mesh)
  _log.info("model %s: %d parameters", config.model.name, param_count(factory.abstract_params))

  checkpointer = ckpt_lib.Checkpointer(
    os.path.join(workdir, "checkpoints"),
    keep=int(config.checkpoint.keep),
    async_save=bool(config.checkpoint.async_save),
  )
  writer = None
  eval_metrics: dict[str, float] = {}
  stage_seconds: dict[str, float] = {}
  state = None
  stage = None
  shardings = None
  stopped = False
  try:
    # ---- resume or start
    latest, resumed_stage, data_state, log_window = None, None, None, None
    while True:
      latest = checkpointer.latest_intact_step()
      if latest is None:
        break
      try:
        meta = checkpointer.restore_meta(latest)
        resumed_stage = int(meta["stage_index"])
        if resumed_stage >= len(plans) or plans[resumed_stage].name != meta.get("stage_name"):
          raise ckpt_lib.CheckpointMismatchError(
            f"checkpoint {latest} in {workdir} was saved in stage {meta.get('stage_name')!r} "
            f"(index {resumed_stage}), which the current config's stage_order "
            f"{tuple(config.stage_order)} does not have at that index"
          )
        stage = _make_stage(
          config, plans[resumed_stage], comps, factory.abstract_params, factory.abstract_stats
        )
        abstract, shardings = factory.abstract(stage.tx)
        state, meta = checkpointer.restore(latest, abstract)
      except ckpt_lib.CheckpointDamagedError as e:
        checkpointer.report_damaged(latest, str(e).split(" is damaged: ", 1)[-1])
        continue
      data_state = ckpt_lib.decode_iterator_state(meta.get("data_iterator"))
      log_window = meta.get("log_window")
      _log.info("resumed from %s step %d (stage %s)", workdir, latest, plans[resumed_stage].name)
      break

    step = int(state.step) if state is not None else 0
    done = _resume_logs(workdir, step, is_main)
    writer = log_lib.MetricWriter(workdir, enabled=is_main)
    evals = _Evaluations(config, comps, mesh, writer, base_model, workdir, done, final_step)
    last_checkpoint = {"step": latest}
    if latest is not None:
      # Evaluations due at the restored step that an interruption cut short (stage end included).
      plan = plans[resumed_stage]
      eval_metrics = evals.run_due(plan, step, state, shardings, at_end=step == plan.end)
    for plan in plans:
      if plan.num_steps == 0 or (plan.end <= step and plan.index != resumed_stage):
        continue
      if plan.index != resumed_stage:
        stage = _make_stage(config, plan, comps, factory.abstract_params, factory.abstract_stats)
        if state is None:
          state, shardings = factory.fresh(stage.tx)
        else:
          state, shardings = factory.with_new_optimizer(state, stage.tx)
        data_state, log_window = None, None
      if step >= plan.end:
        continue
      t_stage = time.perf_counter()
      state, step, last_eval, stopped = _run_stage(
        config=config,
        stage=stage,
        state=state,
        shardings=shardings,
        comps=comps,
        mesh=mesh,
        checkpointer=checkpointer,
        writer=writer,
        evals=evals,
        data_state=data_state,
        log_window=log_window,
        last_checkpoint=last_checkpoint,
        stop_at_step=stop_at_step,
        final_step=final_step,
      )
      stage_seconds[plan.name] = time.perf_counter() - t_stage
      eval_metrics = last_eval or eval_metrics
      if stopped:
        break
    return TrainResult(state, step, eval_metrics, base_model, workdir, stopped, stage_seconds)
  finally:
    checkpointer.close()
    if writer is not None:
      writer.close()


EVALS_DONE_FILE = "evaluations_done.json"
"""Workdir file listing the completed evaluations as ``"<step>:<split>"`` keys (replaced atomically)."""


def _eval_key(step: int, split: str) -> str:
  return f"{int(step)}:{split}"


def _resume_logs(workdir: str, step: int, is_main: bool) -> set[str]:
  """Cuts ``metrics.jsonl`` and the evaluation record back to what the checkpoint at ``step`` produced.

  Kept: records of earlier steps, the train record of ``step`` itself (written before its checkpoint)
  and the evaluations of ``step`` recorded as done. Everything later was produced after the checkpoint
  and will be produced again. Workdirs without the record count their logged evaluations as done.

  Returns:
    The keys of the completed evaluations at or before ``step``.
  """
  path = os.path.join(workdir, EVALS_DONE_FILE)
  log_path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      done = set(json.load(f)["done"])
  else:
    done = set()
    if os.path.exists(log_path):
      with open(log_path, encoding="utf-8") as f:
        for line in f:
          try:
            r = json.loads(line)
          except ValueError:
            continue
          if str(r.get("split", "")).startswith("eval"):
            done.add(_eval_key(r["step"], r["split"]))
  done = {k for k in done if int(k.split(":", 1)[0]) <= step}

  def keep(r: dict[str, Any]) -> bool:
    s = int(r.get("step", 0))
    if s != step:
      return s < step
    return r.get("split") == "train" or _eval_key(s, r.get("split", "")) in done

  if is_main:
    removed = log_lib.rewrite_jsonl(log_path, keep)
    if removed:
      _log.info(
        "removed %d metrics.jsonl record(s) written after step %d's checkpoint", removed, step
      )
    _write_done(path, done)
  return done


def _write_done(path: str, done: set[str]) -> None:
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump({"done": sorted(done, key=lambda k: (int(k.split(":", 1)[0]), k))}, f, indent=1)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


class _Evaluations:
  """The run's evaluations: which are due at a step, running each once, and the record of those done.

  ``config.eval`` is logged as split ``eval``, ``config.evals[name]`` as ``eval/<name>``. Periodic ones
  run every ``every_steps`` inside a stage; at a stage end all run if ``config.eval.at_stage_end`` or it is
  the last step. After an evaluation's results are in metrics.jsonl its key is added to
  :data:`EVALS_DONE_FILE`, so one cut short is re-run after a restart and a finished one is not repeated.
  The runners are compiled once per run.
  """

  def __init__(self, config, comps, mesh, writer, eval_model, workdir, done, final_step):
    self.config = config
    self.comps = comps
    self.mesh = mesh
    self.writer = writer
    self.eval_model = eval_model
    self.path = os.path.join(workdir, EVALS_DONE_FILE)
    self.done = set(done)
    self.final_step = int(final_step)
    self.named = named_evals(config) if comps.make_evaluation is not None else {}
    self._runners: dict[str, EvalRunner] = {}

  def due(self, plan: StagePlan, step: int, at_end: bool) -> list[str]:
    """Splits of the evaluations due after ``step`` (``at_end``: the stage-end point)."""
    out = []
    if at_end:
      if self.config.eval.at_stage_end or step == self.final_step:
        out = (["eval"] if self.comps.has_eval else []) + [f"eval/{n}" for n in self.named]
      return out
    every = int(self.config.eval.every_steps)
    if self.comps.has_eval and every and step % every == 0:
      out.append("eval")
    for name, entry in self.named.items():
      every = int(entry.get("every_steps") or 0)
      if every and step % every == 0:
        out.append(f"eval/{name}")
    return out

  def run_due(self, plan, step, state, shardings, at_end: bool) -> dict[str, float]:
    """Runs the due evaluations not yet done; returns the main one's metrics (empty if it did not run)."""
    main: dict[str, float] = {}
    for split in self.due(plan, step, at_end):
      if _eval_key(step, split) in self.done:
        continue
      self.comps.fault("eval", step)
      metrics = self._run(split, step, state, shardings)
      self.comps.fault("eval_written", step)
      self.done.add(_eval_key(step, split))
      if self.writer.enabled:
        _write_done(self.path, self.done)
      if split == "eval":
        main = metrics
    return main

  def _run(self, split, step, state, shardings) -> dict[str, float]:
    t0 = time.perf_counter()
    var_shardings = {"params": shardings.params}
    if state.batch_stats:
      var_shardings["batch_stats"] = shardings.batch_stats
    if split not in self._runners:
      if split == "eval":
        runner = self.comps.evaluation(self.eval_model, self.mesh, var_shardings, self.config)
      else:
        name = split.split("/", 1)[1]
        runner = self.comps.make_evaluation(
          self.eval_model, self.mesh, var_shardings, eval_settings(self.config, name)
        )
      self._runners[split] = runner
    runner = self._runners[split]
    report = runner.run(state.variables())
    metrics = self.writer.write(step, runner.scalars(report), split=split)
    if split == "eval" and int(self.config.eval.image_summaries) > 0:
      _write_eval_images(self.config, self.writer, step, self.eval_model, state, runner)
    _log.info("%s at step %d (%.1fs): %s", split, step, time.perf_counter() - t0, _fmt(metrics))
    return metrics


def _random_init_hint(config: Any) -> str:
  """The non-finite-step message's hint when the run starts from random weights (no model_init path)."""
  init = config.get("model_init")
  if init is not None and init.get("path"):
    return ""
  return (
    "This run starts from random weights (config.model_init.path is unset). The paper-width presets of "
    "DeepLab-v2 (frozen BatchNorm) and HybridNet (no BatchNorm) start from ImageNet weights and diverge "
    "from random ones (step-0 losses measured at paper width: 3.9e7 and 2.4e11): convert "
    "pretrained weights with `semdepth convert-weights` and pass --config.model_init.path=DIR (or "
    "HybridNet's vgg_init=DIR), or use size=small / tiny."
  )


def _run_stage(
  *,
  config,
  stage: _Stage,
  state: TrainState,
  shardings,
  comps: Components,
  mesh,
  checkpointer: ckpt_lib.Checkpointer,
  writer: log_lib.MetricWriter,
  evals: _Evaluations,
  data_state,
  log_window: Mapping[str, Any] | None,
  last_checkpoint: dict[str, int | None],
  stop_at_step: int | None,
  final_step: int,
):
  from semdepth_jax.data.pipeline import make_global_batch

  plan = stage.plan
  st = plan.cfg
  batch_size = int(st.batch_size)
  step_fn = step_lib.make_train_step(
    stage.model,
    stage.loss_fn,
    stage.tx,
    trainable=stage.trainable,
    trainable_stats=stage.trainable_stats,
    compute_dtype=config.compute_dtype,
    remat=config.get("remat", "none"),  # configs saved before the switch existed
  )
  jitted = step_lib.jit_train_step(
    step_fn,
    mesh,
    shardings,
    cpu_conv=config.get("cpu_conv", "ynn"),
    pointwise_conv=config.get("pointwise_conv", "conv"),
    volume_conv=config.get("volume_conv", "conv"),
  )
  iterator = comps.train_iterator(batch_size, int(config.seed) + 1000 * plan.index)
  if data_state is not None:
    iterator.set_state(data_state)
  step = int(state.step)
  accum = int(st.optimizer.grad_accum_steps)
  every_ckpt = int(config.checkpoint.every_steps)
  every_log = max(int(config.log_every_steps), 1)
  random_init_hint = _random_init_hint(config)
  progress = log_lib.Progress(
    plan.end - plan.start,
    step - plan.start,
    desc=f"{plan.name} ({plan.index + 1})",
    enabled=bool(config.progress_bar),
  )
  # The train log's averaging window continues across a restart (it is part of the checkpoint).
  sums: dict[str, float] = dict((log_window or {}).get("sums", {}))
  n_sum = int((log_window or {}).get("count", 0))
  t_log = time.perf_counter()
  last_eval: dict[str, float] = {}
  stopped = False

  def save():
    # The JSON meta is written by the primary process. Every process reads its own shard but consumes the
    # same number of batches, so their (position-only) grain iterator states coincide.
    meta = {
      "stage_index": plan.index,
      "stage_name": plan.name,
      "data_iterator": ckpt_lib.encode_iterator_state(iterator.get_state()),
      "step": step,
      "log_window": {"sums": dict(sums), "count": n_sum},
    }
    comps.fault("checkpoint", step)
    checkpointer.save(step, state, meta)
    last_checkpoint["step"] = step
    comps.fault("checkpoint_written", step)

  try:
    with jax.set_mesh(mesh):
      while step < plan.end:
        try:
          host_batch = next(iterator)
        except StopIteration:
          raise RuntimeError(
            f"train iterator of stage {plan.name!r} ended at step {step} before {plan.end}"
          ) from None
        batch = make_global_batch(step_lib.device_batch(host_batch), mesh)
        state, metrics = jitted(state, batch)
        step += 1
        metrics = jax.device_get(metrics)
        log_lib.check_finite(step, metrics, last_checkpoint["step"], random_init_hint)
        for k, v in log_lib.scalars(metrics).items():
          sums[k] = sums.get(k, 0.0) + v
        n_sum += 1
        log_now = step % every_log == 0 or step == plan.end
        progress.update(1, batch_size, float(metrics["loss"]) if log_now else None)
        if log_now:
          now = time.perf_counter()
          record = {k: v / n_sum for k, v in sums.items() if k != "finite"}
          record["learning_rate"] = float(
            optim.current_learning_rate(stage.schedule, step - 1 - plan.start, accum)
          )
          record["examples_per_s"] = n_sum * batch_size / max(now - t_log, 1e-9)
          record["stage"] = plan.index
          writer.write(step, record, split="train")
          sums, n_sum, t_log = {}, 0, now
        comps.fault("step", step)
        if every_ckpt and step % every_ckpt == 0 and step != plan.end:
          save()  # The stage-end save below (after any BN recalibration) covers step == end.
        if step != plan.end:
          last_eval = evals.run_due(plan, step, state, shardings, at_end=False) or last_eval
        if stop_at_step is not None and step >= stop_at_step and step < final_step:
          stopped = True
          break
      if not stopped:
        n_recal = int(st.recalibrate_bn_batches)
        if n_recal > 0 and state.batch_stats:
          state = _recalibrate_batch_stats(
            config,
            stage,
            state,
            shardings,
            comps,
            mesh,
            n_recal,
            int(config.seed) + 1000 * plan.index + 777,
          )
        save()
        last_eval = evals.run_due(plan, step, state, shardings, at_end=True) or last_eval
  finally:
    progress.close()
    close = getattr(iterator, "close", None)
    if callable(close):
      close()
  return state, step, last_eval, stopped


def _recalibrate_batch_stats(config, stage, state, shardings, comps, mesh, num_batches, seed):
  """Replaces the trainable BatchNorm statistics by their mean over ``num_batches`` fresh batches.

  See ``step.make_batch_stats_probe``; frozen modules keep their statistics.
  """
  from semdepth_jax.data.pipeline import make_global_batch

  probe = step_lib.make_batch_stats_probe(stage.model, compute_dtype=config.compute_dtype)
  var_shardings = {"params": shardings.params, "batch_stats": shardings.batch_stats}
  jitted = jax.jit(
    probe,
    in_shardings=(var_shardings, mesh_lib.batch_sharding(mesh), mesh_lib.replicated(mesh)),
    out_shardings=shardings.batch_stats,
  )
  iterator = comps.train_iterator(int(stage.plan.cfg.batch_size), seed)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  total = None
  t0 = time.perf_counter()
  with jax.set_mesh(mesh):
    for i in range(num_batches):
      batch = make_global_batch(step_lib.device_batch(next(iterator)), mesh)
      rng = jax.random.fold_in(jax.random.PRNGKey(seed), i)
      stats = jitted(variables, batch, rng)
      total = stats if total is None else jax.tree.map(jnp.add, total, stats)
  mean = jax.tree.map(lambda x: x / num_batches, total)
  mask = stage.trainable_stats
  if mask is not None:
    mean = jax.tree.map(lambda new, old, t: new if t else old, mean, state.batch_stats, mask)
  close = getattr(iterator, "close", None)
  if callable(close):
    close()
  _log.info(
    "recomputed BatchNorm statistics of stage %s over %d batches (%.1fs)",
    stage.plan.name,
    num_batches,
    time.perf_counter() - t0,
  )
  return state.replace(batch_stats=mean)


def eval_summary_images(
  config, model, variables, host_batch, max_images: int
) -> dict[str, np.ndarray]:
  """``viz.summary_images`` panels for the first ``max_images`` examples of a host eval batch.

  Predictions come from ``predict.InferenceModel`` (the model's ``decode``: metres and class probabilities
  at the batch's image size), exactly what the evaluation scores.

  Args:
    config: the run's config (input size and dataset meta info come from it).
    model: the evaluation model (model-family contract).
    variables: ``{'params', 'batch_stats'}`` (host or device arrays).
    host_batch: a numpy batch from the eval iterator.
    max_images: number of examples drawn.

  Returns:
    ``{"examples/<i>": uint8 (H, W_total, 3)}``: RGB | GT depth | predicted depth | GT labels | predicted.
  """
  from semdepth_jax import predict, viz

  small = {k: np.asarray(v)[:max_images] for k, v in step_lib.device_batch(host_batch).items()}
  inference = predict.InferenceModel(
    model, input_size=tuple(config.image_size), **predict.conv_switches(config)
  )
  labels = small.get("segmentation") if inference.pass_labels else None
  outputs = jax.jit(inference.apply)(variables, small["image"], labels)
  return viz.summary_images(
    small, jax.device_get(outputs), get_meta(config.dataset), max_images=max_images
  )


def _write_eval_images(config, writer, step, eval_model, state, runner: EvalRunner) -> None:
  """Draws the first ``config.eval.image_summaries`` evaluation examples to TensorBoard.

  Skipped (with a log line) for datasets without meta info, e.g. the in-memory data of tests. Called by
  every process: fetching variables sharded over several processes is a collective; process 0 draws.
  """
  try:
    get_meta(config.dataset)
  except KeyError:
    _log.info("no meta info for dataset %r: no image summaries", config.dataset)
    return
  if not writer.writes_images and jax.process_count() == 1:
    return
  variables = mesh_lib.host_tree(state.variables())
  if not writer.writes_images:
    return
  host = next(iter(runner.iterator()))
  images = eval_summary_images(
    config, eval_model, variables, host, int(config.eval.image_summaries)
  )
  writer.write_images(step, images, prefix="eval/")


def _fmt(metrics: Mapping[str, float]) -> str:
  return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()) if np.isscalar(v))
