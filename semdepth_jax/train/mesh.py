"""Device mesh, shardings and multi-host start-up for training and evaluation.

The mesh has two axes, ``('data', 'model')``, both of type ``AxisType.Auto`` (``jax.make_mesh`` defaults to
``Explicit`` axes, under which convolution gradients on sharded inputs raise ``ShardingTypeError``; see
``docs/environment_notes.md``). Batches are sharded over ``'data'``; parameters are replicated unless a
rule maps their path to a ``PartitionSpec`` (conventions.md, "Training and evaluation").
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "model")
"""Names of the mesh axes, in order."""

_log = logging.getLogger(__name__)


def maybe_initialize_distributed(force: bool = False) -> bool:
  """Calls ``jax.distributed.initialize`` when the environment asks for a multi-process run.

  A multi-process run is requested by ``force`` (config ``distributed=True``) or by the environment variable
  ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0's coordinator). ``JAX_NUM_PROCESSES`` and
  ``JAX_PROCESS_ID`` give the process count and this process's index; jax itself does not read these two
  (jax 0.10.2 reads only ``JAX_COORDINATOR_ADDRESS`` and ``JAX_LOCAL_DEVICE_IDS``), so they are passed
  here. Unset values are left to jax's cluster auto-detection (Cloud TPU, SLURM, Open MPI, Kubernetes).
  On CPU, cross-process collectives use jax's default ``jax_cpu_collectives_implementation`` (``gloo``
  in jax 0.10.2). Must run before any other JAX call touches the devices; a second call is a no-op.

  Args:
    force: initialise even without ``JAX_COORDINATOR_ADDRESS`` (cluster auto-detection).

  Returns:
    True if this call (or an earlier one) initialised the distributed runtime.

  Raises:
    ValueError: ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` is not an integer, or the index is outside
      ``[0, JAX_NUM_PROCESSES)`` (names the variable, the expected and the actual value).
  """
  if not (force or os.environ.get("JAX_COORDINATOR_ADDRESS")):
    return False
  if getattr(maybe_initialize_distributed, "_done", False):
    return True
  num_processes = _env_int("JAX_NUM_PROCESSES", minimum=1)
  process_id = _env_int("JAX_PROCESS_ID", minimum=0)
  if num_processes is not None and process_id is not None and process_id >= num_processes:
    raise ValueError(
      f"environment JAX_PROCESS_ID: expected an index in [0, JAX_NUM_PROCESSES={num_processes}), "
      f"got {process_id}"
    )
  jax.distributed.initialize(num_processes=num_processes, process_id=process_id)
  maybe_initialize_distributed._done = True  # type: ignore[attr-defined]
  _log.info(
    "jax.distributed initialised: process %d of %d", jax.process_index(), jax.process_count()
  )
  return True


def _env_int(name: str, minimum: int) -> int | None:
  """The integer environment variable ``name`` (None if unset or empty); ValueError if malformed."""
  raw = os.environ.get(name, "").strip()
  if not raw:
    return None
  try:
    value = int(raw)
  except ValueError:
    value = None
  if value is None or value < minimum:
    raise ValueError(f"environment {name}: expected an integer >= {minimum}, got {raw!r}")
  return value


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, int]:
  """Resolves a ``(data, model)`` mesh shape where one entry may be ``-1`` (= all remaining devices).

  Args:
    shape: two ints; at most one ``-1``.
    num_devices: number of devices to cover.

  Returns:
    ``(data, model)`` with ``data * model == num_devices``.

  Raises:
    ValueError: wrong length, more than one ``-1``, non-positive entries, or a product that does not equal
      ``num_devices``.
  """
  shape = tuple(int(s) for s in shape)
  if len(shape) != len(MESH_AXES):
    raise ValueError(f"mesh shape must have {len(MESH_AXES)} entries {MESH_AXES}, got {shape}")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape may contain at most one -1, got {shape}")
  if any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"mesh shape entries must be positive or -1, got {shape}")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    if num_devices % known:
      raise ValueError(f"mesh shape {shape}: {num_devices} devices are not divisible by {known}")
    shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if int(np.prod(shape)) != num_devices:
    raise ValueError(
      f"mesh shape {shape} needs {int(np.prod(shape))} devices, but {num_devices} are available"
    )
  return shape  # type: ignore[return-value]


def mesh_shape_for(
  shape: Sequence[int], num_devices: int, process_count: int = 1
) -> tuple[int, int]:
  """The ``(data, model)`` shape :func:`make_mesh` builds for ``shape`` on ``num_devices`` devices.

  A single-process run may use fewer devices than exist when ``shape`` has no ``-1`` (the first ones);
  otherwise the shape must cover every device (:func:`resolve_mesh_shape`). Needs no device, so configs
  are checked before anything is built (``config_utils.validate_config``).

  Args:
    shape: ``(data, model)`` sizes; one entry may be ``-1``.
    num_devices: devices available (all processes).
    process_count: number of JAX processes.

  Returns:
    The resolved shape; its product is the number of devices the mesh uses.

  Raises:
    ValueError: see :func:`resolve_mesh_shape` (e.g. more devices needed than ``num_devices``).
  """
  shape = tuple(int(s) for s in shape)
  wanted = int(np.prod(shape))
  if -1 not in shape and 0 < wanted < num_devices and process_count == 1:
    num_devices = wanted
  return resolve_mesh_shape(shape, num_devices)


def make_mesh(shape: Sequence[int] = (-1, 1), devices: Sequence[Any] | None = None) -> Mesh:
  """Builds the ``('data', 'model')`` mesh with ``AxisType.Auto`` axes.

  Args:
    shape: ``(data, model)`` sizes; one entry may be ``-1`` (default: every device on ``'data'``). In a
      single-process run a fully specified shape may use fewer devices than exist (the first ones; e.g.
      ``(1, 1)`` for a one-device reference run).
    devices: devices to use (default: ``jax.devices()``, i.e. all devices of all processes).

  Returns:
    A ``jax.sharding.Mesh``.

  Raises:
    ValueError: see :func:`resolve_mesh_shape`.
  """
  devices = list(jax.devices() if devices is None else devices)
  resolved = mesh_shape_for(shape, len(devices), jax.process_count())
  devices = devices[: int(np.prod(resolved))]
  return jax.make_mesh(
    resolved, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices
  )


def replicated(mesh: Mesh) -> NamedSharding:
  """A sharding that places a full copy of an array on every device of ``mesh``."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of batch arrays: leading (example) axis split over ``'data'``, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec("data"))


def host_tree(tree: Any) -> Any:
  """Copies a pytree of arrays to host numpy arrays, also arrays sharded over several processes.

  ``jax.device_get`` reads only arrays this process can address in full (or fully replicated ones); an
  array split over the devices of several processes (a parameter sharded by a ``param_sharding`` rule
  over an axis that spans processes) is gathered with ``multihost_utils.process_allgather``, a
  collective: in a multi-process run every process must call this with the same tree.

  Args:
    tree: pytree of ``jax.Array`` / numpy arrays / scalars.

  Returns:
    The same structure with numpy arrays of the global shapes and dtypes.
  """
  from jax.experimental import multihost_utils

  def one(x):
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

  return jax.tree.map(one, tree)


def path_to_str(path: Sequence[Any]) -> str:
  """Joins a ``jax.tree_util`` key path into ``'a/b/c'`` (the form the regex rules match against)."""
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def _to_spec(spec: Any) -> PartitionSpec:
  if isinstance(spec, PartitionSpec):
    return spec
  if spec is None:
    return PartitionSpec()
  if isinstance(spec, str):
    return PartitionSpec(spec)
  return PartitionSpec(*[None if s in (None, "", "None") else s for s in spec])


def param_partition_specs(
  tree: Any, rules: Sequence[tuple[str, Any]] = (), mesh: Mesh | None = None
) -> Any:
  """Maps every leaf of ``tree`` to a ``PartitionSpec`` by regex rules on its path.

  Rules are tried in order; the first whose pattern ``re.search``-es the leaf path (``'params/conv1/kernel'``
  style, see :func:`path_to_str`) gives the spec. Leaves without a match, and scalars, are replicated.

  Args:
    tree: pytree of arrays or ``jax.ShapeDtypeStruct`` (e.g. from ``jax.eval_shape``).
    rules: ``(pattern, spec)`` pairs; ``spec`` is a ``PartitionSpec`` or a tuple of mesh axis names /
      None per array dimension (e.g. ``(None, None, None, 'model')`` to split a conv kernel's output
      features over ``'model'``).
    mesh: if given, every sharded dimension is checked to divide evenly over its mesh axes.

  Returns:
    A pytree of ``PartitionSpec`` with the structure of ``tree``.

  Raises:
    ValueError: a spec has more entries than the leaf has dimensions, names an unknown mesh axis, or
      does not divide a dimension (the message names the leaf).
  """
  compiled = [(re.compile(p), _to_spec(s)) for p, s in rules]

  def one(path, leaf):
    name = path_to_str(path)
    ndim = len(getattr(leaf, "shape", ()))
    for pattern, spec in compiled:
      if pattern.search(name):
        if len(spec) > ndim:
          raise ValueError(
            f"sharding rule {pattern.pattern!r} gives {spec} to {name!r}, which has only {ndim} dims"
          )
        if mesh is not None:
          _check_divisible(name, leaf.shape, spec, mesh, pattern.pattern)
        return spec
    return PartitionSpec()

  return jax.tree_util.tree_map_with_path(one, tree)


def _check_divisible(name: str, shape: Sequence[int], spec: PartitionSpec, mesh: Mesh, rule: str):
  for dim, axes in enumerate(spec):
    if axes is None:
      continue
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    unknown = [a for a in axes if a not in mesh.shape]
    if unknown:
      raise ValueError(f"sharding rule {rule!r}: unknown mesh axis {unknown} for {name!r}")
    n = int(np.prod([mesh.shape[a] for a in axes]))
    if shape[dim] % n:
      raise ValueError(
        f"sharding rule {rule!r} splits dim {dim} (size {shape[dim]}) of {name!r} {tuple(shape)} "
        f"over {axes} ({n} devices), which does not divide it; make the rule more specific"
      )


def tree_shardings(mesh: Mesh, specs: Any) -> Any:
  """Turns a pytree of ``PartitionSpec`` into ``NamedSharding`` on ``mesh``."""
  return jax.tree.map(
    lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, PartitionSpec)
  )


def check_batch_divisible(global_batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
  """Raises ValueError unless ``global_batch_size`` splits evenly over the mesh's ``'data'`` axis."""
  n = mesh.shape["data"]
  if global_batch_size % n:
    raise ValueError(
      f"{what}={global_batch_size} is not divisible by the mesh 'data' axis size {n}; "
      f"choose a multiple of {n} or change mesh_shape"
    )
