"""Key tables: one explicit mapping per architecture from a source state dict to Flax variables.

A key table is a list of :class:`Rule` ``(source, target, kind)``:

* ``source``: a key of the source state dict (PyTorch ``state_dict`` names, e.g. ``features.0.weight``), or
  for ``kind='bn'`` the module prefix (``layer1.0.bn1``).
* ``target``: the ``/``-joined path in the Flax variables *without* the collection (``features/conv0/kernel``;
  for ``bn`` the module path ``layer1/block0/bn1``). The collection (``params`` or ``batch_stats``) is
  looked up in the target tree, so the same table serves trainable and frozen BatchNorm
  (``semdepth_jax.models.layers.BatchNormSpec``).
* ``kind``: how the array is laid out:

  ========== ==================================================== ==========================================
  kind       source layout                                        target layout
  ========== ==================================================== ==========================================
  ``conv``   PyTorch conv weight (O, I/groups, *K)                (*K, I/groups, O) (HWIO / DHWIO)
  ``linear`` PyTorch linear weight (out, in)                      (in, out)
  ``copy``   any (biases, embeddings)                             unchanged
  ``bn``     ``{source}.weight/.bias/.running_mean/.running_var`` ``{target}/scale, bias, mean, var``
  ``drop``   a key the architecture deliberately discards          nothing (``target`` is ignored)
  ========== ==================================================== ==========================================

``drop`` rules name reference keys that a variant has no place for (a classifier a headless backbone
omits): they are consumed when present and are no error when absent, whereas any other unused key is.

``num_batches_tracked`` entries and a leading ``module.`` (DataParallel) are ignored by
:func:`normalise_state_dict`. :func:`apply_key_table` is strict: every table entry must exist in the
source with the right shape, every target leaf must exist, and source keys the table does not mention are
reported; all problems are collected into one :class:`KeyTableError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

KINDS = ("conv", "linear", "copy", "bn", "drop")

BN_SUFFIXES = (
  ("weight", "scale"),
  ("bias", "bias"),
  ("running_mean", "mean"),
  ("running_var", "var"),
)
"""PyTorch BatchNorm state-dict suffix -> Flax variable name."""


class KeyTableError(ValueError):
  """A source checkpoint does not fit a key table / target tree; the message lists every problem."""


@dataclasses.dataclass(frozen=True)
class Rule:
  """One key-table entry (see the module docstring)."""

  source: str
  target: str
  kind: str = "copy"

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"key table: kind must be one of {KINDS}, got {self.kind!r} ({self.source})")


def rules(entries: Iterable[Rule | Sequence[str]]) -> list[Rule]:
  """Turns ``(source, target, kind)`` tuples (or Rules) into a list of :class:`Rule`."""
  return [e if isinstance(e, Rule) else Rule(*e) for e in entries]


def normalise_state_dict(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Numpy float arrays by key; drops ``num_batches_tracked``; strips a common ``module.`` prefix."""
  out = {}
  keys = list(state)
  strip = bool(keys) and all(k.startswith("module.") for k in keys)
  for k, v in state.items():
    if k.endswith("num_batches_tracked"):
      continue
    name = k[len("module.") :] if strip else k
    arr = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
    out[name] = arr
  return out


def expand(table: Iterable[Rule]) -> list[tuple[str, str, str]]:
  """Expands ``bn`` rules into their four leaves: ``[(source key, target leaf path, kind), ...]``."""
  out = []
  for r in table:
    if r.kind == "bn":
      out += [(f"{r.source}.{s}", f"{r.target}/{t}", "copy") for s, t in BN_SUFFIXES]
    else:
      out.append((r.source, r.target, r.kind))
  return out


def convert_array(arr: np.ndarray, kind: str) -> np.ndarray:
  """Converts one source array to the target layout of ``kind`` (see the module docstring)."""
  if kind == "conv":
    if arr.ndim < 3:
      raise ValueError(f"conv weight needs (O, I, *K), got shape {arr.shape}")
    nd = arr.ndim - 2
    return np.transpose(arr, (*range(2, 2 + nd), 1, 0))
  if kind == "linear":
    if arr.ndim != 2:
      raise ValueError(f"linear weight needs (out, in), got shape {arr.shape}")
    return arr.T
  return arr


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """``{'a': {'b': x}}`` -> ``{'a/b': x}``."""
  out = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(flatten(v, path))
    else:
      out[path] = v
  return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """Inverse of :func:`flatten`."""
  out: dict[str, Any] = {}
  for path, v in flat.items():
    node = out
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return out


def apply_key_table(
  state: Mapping[str, Any],
  table: Iterable[Rule],
  target: Mapping[str, Any],
  *,
  allow_unused: Sequence[str] = (),
  where: str = "checkpoint",
) -> dict[str, Any]:
  """Maps a source state dict onto the Flax variables ``target`` through ``table`` (strict).

  Args:
    state: source state dict (``normalise_state_dict`` is applied).
    table: the architecture's key table.
    target: the Flax variables to fill, ``{'params': ..., 'batch_stats': ...}`` (arrays or
      ``jax.ShapeDtypeStruct``; only shapes and dtypes are read).
    allow_unused: prefixes of source keys that may stay unused (e.g. ``fc.`` when dropping a classifier).
    where: names the source in errors (a file path).

  Returns:
    Variables shaped like ``target`` (numpy arrays in the target dtype); leaves of ``target`` that the
    table does not mention are an error, so the result is complete.

  Raises:
    KeyTableError: lists every missing source key, shape mismatch (path, expected, actual), target path
      not in the tree, target leaf not covered by the table and unused source key.
  """
  src = normalise_state_dict(state)
  flat_target = {}
  for collection, tree in target.items():
    for path, leaf in flatten(tree).items():
      flat_target[path] = (collection, leaf)
  problems: list[str] = []
  result: dict[str, dict[str, Any]] = {}
  used, mentioned = set(), set()
  for source, path, kind in expand(table):
    if kind == "drop":
      if source in src:
        used.add(source)
      continue
    mentioned.add(path)
    if source not in src:
      problems.append(f"missing in {where}: {source} (for {path})")
      continue
    used.add(source)
    if path not in flat_target:
      problems.append(f"target has no {path} (from {source})")
      continue
    collection, leaf = flat_target[path]
    try:
      arr = convert_array(src[source], kind)
    except ValueError as e:
      problems.append(f"{source}: {e}")
      continue
    if tuple(arr.shape) != tuple(leaf.shape):
      problems.append(
        f"shape mismatch at {collection}/{path}: expected {tuple(leaf.shape)}, got {tuple(arr.shape)} "
        f"(from {source} {tuple(src[source].shape)})"
      )
      continue
    result.setdefault(collection, {})[path] = arr.astype(leaf.dtype)
  for path in sorted(set(flat_target) - mentioned):
    problems.append(f"not in the key table: {flat_target[path][0]}/{path}")
  unused = [k for k in src if k not in used and not any(k.startswith(p) for p in allow_unused)]
  problems += [f"unused key in {where}: {k} {tuple(src[k].shape)}" for k in sorted(unused)]
  if problems:
    raise KeyTableError(
      f"{where} does not fit the key table ({len(problems)} problems):\n  " + "\n  ".join(problems)
    )
  return {c: unflatten(flat) for c, flat in result.items()}
