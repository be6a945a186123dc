"""The one checkpoint wrapper: Orbax ``CheckpointManager`` with a "keep the latest K" preservation policy.

A checkpoint step directory holds two items:

* ``state``: the :class:`~semdepth_jax.train.state.TrainState` pytree (params, optimiser state, batch
  statistics, step, RNG), saved with ``StandardSave`` (sharded arrays are written by every process).
* ``meta``: a JSON dict (current stage, data-iterator state, anything else small).

Restores validate the stored shapes and dtypes against the abstract target *before* reading, and fail with
one message that names every mismatching leaf.

Integrity: once a save is on disk, a SHA-256 digest of every file of the step directory is written into it
(``semdepth_sha256.json``, atomically). :meth:`Checkpointer.verify` checks the files Orbax needs
(``_METADATA``, ``manifest.ocdbt``, the JSON ``meta``) and the digests, so a truncated, deleted or silently
changed file is reported with the step and the file; :meth:`Checkpointer.latest_intact_step` moves damaged
checkpoints aside (``<step>.damaged``, never deleted) and returns the newest intact one. The calls follow ``docs/environment_notes.md`` (Orbax
0.12.8: ``Composite`` of ``StandardSave``/``JsonSave``, a ``LatestN`` preservation policy rather than the
deprecated ``max_to_keep``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from semdepth_jax.train.mesh import path_to_str

_log = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
  """A stored checkpoint does not match the state the current config builds (names the leaves)."""


class CheckpointDamagedError(RuntimeError):
  """A checkpoint's files are missing, truncated or changed since it was saved (names step and file)."""


CHECKSUM_FILE = "semdepth_sha256.json"
"""Per-file SHA-256 digests of a step directory, written after its save is complete."""

_ITEM_FILES = {
  "variables": ("_METADATA", "manifest.ocdbt"),
  "train": ("_METADATA", "manifest.ocdbt"),
  "state": ("_METADATA", "manifest.ocdbt"),
  "meta": ("metadata",),
}


def file_digests(directory: str | os.PathLike) -> dict[str, str]:
  """``{relative path: sha256 hex}`` of every file under ``directory`` except :data:`CHECKSUM_FILE`."""
  out = {}
  for root, dirs, files in os.walk(directory):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, directory)
      if rel == CHECKSUM_FILE:
        continue
      h = hashlib.sha256()
      with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
          h.update(chunk)
      out[rel] = h.hexdigest()
  return out


def _write_json_atomic(path: str, value: Any) -> None:
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def encode_iterator_state(state: Any) -> Any:
  """Makes a data-iterator state JSON-serialisable (bytes become ``{"__bytes_b64__": ...}``)."""
  if isinstance(state, bytes | bytearray):
    return {"__bytes_b64__": base64.b64encode(bytes(state)).decode("ascii")}
  return state


def decode_iterator_state(state: Any) -> Any:
  """Inverse of :func:`encode_iterator_state`."""
  if isinstance(state, dict) and set(state) == {"__bytes_b64__"}:
    return base64.b64decode(state["__bytes_b64__"])
  return state


def abstract_like(tree: Any) -> Any:
  """``jax.ShapeDtypeStruct`` tree (with shardings) of a concrete pytree; Python scalars via ``np.shape``."""

  def one(x):
    if isinstance(x, jax.Array | np.ndarray):
      return ocp.utils.to_shape_dtype_struct(x)
    if isinstance(x, jax.ShapeDtypeStruct):
      return x
    return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)

  return jax.tree.map(one, tree)


def _leaf_table(tree: Any) -> dict[str, Any]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {path_to_str(p): leaf for p, leaf in leaves}


def check_compatible(stored: Any, target: Any, where: str = "checkpoint") -> None:
  """Compares stored array metadata with an abstract target, leaf by leaf.

  Args:
    stored: pytree whose leaves have ``shape`` and ``dtype`` (Orbax ``ArrayMetadata``).
    target: pytree of ``jax.ShapeDtypeStruct`` (or arrays).
    where: named in the error (e.g. the step directory).

  Raises:
    CheckpointMismatchError: leaves missing on either side, or differing shape or dtype. The message lists
      every offending leaf path with the stored and expected shape/dtype.
  """
  s_tab, t_tab = _leaf_table(stored), _leaf_table(target)
  problems = []
  for name in sorted(set(t_tab) - set(s_tab)):
    problems.append(f"  {name}: expected by the current config, missing in the {where}")
  for name in sorted(set(s_tab) - set(t_tab)):
    problems.append(f"  {name}: in the {where}, not expected by the current config")
  for name in sorted(set(s_tab) & set(t_tab)):
    s, t = s_tab[name], t_tab[name]
    s_shape, t_shape = tuple(getattr(s, "shape", ())), tuple(getattr(t, "shape", ()))
    s_dtype = np.dtype(getattr(s, "dtype", np.float32))
    t_dtype = np.dtype(getattr(t, "dtype", np.float32))
    if s_shape != t_shape or s_dtype != t_dtype:
      problems.append(
        f"  {name}: stored {s_dtype.name}{list(s_shape)} vs expected {t_dtype.name}{list(t_shape)}"
      )
  if problems:
    raise CheckpointMismatchError(
      f"{where} does not match the state built from the current config "
      f"({len(problems)} leaf/leaves):\n" + "\n".join(problems) + "\nUse a fresh --workdir or the "
      "config the checkpoint was trained with (saved as config.json next to it)."
    )


def split_state(state: Any) -> tuple[dict[str, Any], dict[str, Any]]:
  """``TrainState`` (or its abstract twin) -> (``{'params', 'batch_stats'}``, ``{'step', 'opt_state', 'rng'}``)."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  train = {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}
  return variables, train


def join_state(template: Any, variables: Any, train: Any) -> Any:
  """Inverse of :func:`split_state` (``template``: a state of the right type, e.g. the abstract one)."""
  return template.replace(
    params=variables["params"],
    batch_stats=variables.get("batch_stats", template.batch_stats) or template.batch_stats,
    step=train["step"],
    opt_state=train["opt_state"],
    rng=train["rng"],
  )


class Checkpointer:
  """Saves and restores ``(state, meta)`` pairs under ``directory/<step>/``.

  A checkpoint holds three Orbax items: ``variables`` (``params`` and ``batch_stats``, all that inference
  needs; :meth:`restore_variables` reads only this), ``train`` (``step``, ``opt_state``, ``rng``) and
  ``meta`` (JSON). Checkpoints written before the split (one ``state`` item) are still read.

  Keeps the latest ``keep`` checkpoints (``LatestN`` preservation policy). When to save is the caller's
  decision (the loop saves every ``checkpoint.every_steps``, at stage ends and at the end); each save is
  forced and asynchronous, and :meth:`wait` / :meth:`close` block until it is on disk.

  Args:
    directory: folder of the checkpoints (created if missing).
    keep: number of most recent checkpoints to keep (>= 1).
    async_save: write in a background thread.

  Raises:
    ValueError: ``keep < 1``.
  """

  def __init__(self, directory: str | os.PathLike, keep: int = 3, async_save: bool = True):
    if keep < 1:
      raise ValueError(f"checkpoint.keep must be >= 1, got {keep}")
    self.directory = os.fspath(os.path.abspath(directory))
    self._unsealed: list[int] = []  # saved, digests not yet written
    self._verified: set[int] = set()
    options = ocp.CheckpointManagerOptions(
      create=True,
      preservation_policy=checkpoint_managers.LatestN(n=int(keep)),
      enable_async_checkpointing=async_save,
    )
    self._mngr = ocp.CheckpointManager(
      self.directory,
      options=options,
      item_handlers={
        "variables": ocp.StandardCheckpointHandler(),
        "train": ocp.StandardCheckpointHandler(),
        "state": ocp.StandardCheckpointHandler(),  # the former single item (read only)
        "meta": ocp.JsonCheckpointHandler(),
      },
    )

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def latest_step(self) -> int | None:
    """Step of the newest complete checkpoint, or None."""
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of all kept checkpoints, ascending."""
    return sorted(self._mngr.all_steps())

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Starts saving ``state`` and the JSON-serialisable ``meta`` as checkpoint ``step``.

    Saving a step that already exists is skipped (e.g. the final save right after a periodic one).
    """
    step = int(step)
    if step in self._mngr.all_steps():
      return
    self._seal()
    variables, train = split_state(state)
    self._mngr.save(
      step,
      args=ocp.args.Composite(
        variables=ocp.args.StandardSave(variables),
        train=ocp.args.StandardSave(train),
        meta=ocp.args.JsonSave(dict(meta)),
      ),
      force=True,
    )
    self._unsealed.append(step)

  def _seal(self) -> None:
    """Waits for pending saves, then writes the digests of each (primary process only)."""
    if not self._unsealed:
      return
    self._mngr.wait_until_finished()
    for step in self._unsealed:
      step_dir = os.path.join(self.directory, str(step))
      if jax.process_index() == 0 and os.path.isdir(step_dir):
        _write_json_atomic(
          os.path.join(step_dir, CHECKSUM_FILE), {"sha256": file_digests(step_dir)}
        )
    self._unsealed = []

  def verify(self, step: int) -> str | None:
    """Checks the files of checkpoint ``step``; returns None if intact, else what is wrong.

    Checked: the item folders and the files Orbax reads first (``_METADATA``, ``manifest.ocdbt``, the
    JSON ``meta``), and, when the checkpoint has :data:`CHECKSUM_FILE` (every checkpoint saved by this
    class), the SHA-256 of every file (catches truncated, deleted and silently changed data files).

    Returns:
      None, or one line naming the file (relative to the checkpoint folder) and the problem.
    """
    step_dir = os.path.join(self.directory, str(int(step)))
    if not os.path.isdir(step_dir):
      return f"folder {step_dir} is missing"
    items = [k for k in ("variables", "train", "meta") if os.path.isdir(os.path.join(step_dir, k))]
    if os.path.isdir(os.path.join(step_dir, "state")):
      items = ["state"] + [k for k in items if k == "meta"]
      required = ("state", "meta")
    else:
      required = ("variables", "train", "meta")
    for item in required:
      if item not in items:
        return f"item folder {item}/ is missing"
      for name in _ITEM_FILES[item]:
        path = os.path.join(step_dir, item, name)
        if not os.path.isfile(path):
          return f"file {item}/{name} is missing"
        if os.path.getsize(path) == 0:
          return f"file {item}/{name} is empty"
    try:
      with open(os.path.join(step_dir, "meta", "metadata"), encoding="utf-8") as f:
        json.load(f)
    except (OSError, ValueError) as e:
      return f"file meta/metadata is not valid JSON ({e})"
    sums_path = os.path.join(step_dir, CHECKSUM_FILE)
    if not os.path.isfile(sums_path):
      return None  # saved before digests existed, or killed between save and digest: structure only
    try:
      with open(sums_path, encoding="utf-8") as f:
        expected = dict(json.load(f)["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as e:
      return f"file {CHECKSUM_FILE} is unreadable ({e})"
    actual = file_digests(step_dir)
    for rel, digest in sorted(expected.items()):
      if rel not in actual:
        return f"file {rel} is missing"
      if actual[rel] != digest:
        return f"file {rel} has changed since it was saved (SHA-256 mismatch)"
    return None

  def move_aside(self, step: int) -> str:
    """Renames checkpoint ``step`` to ``<step>.damaged`` (``.damaged.1``, ... if taken); returns the path.

    The damaged files are kept for inspection; Orbax no longer lists the step.
    """
    src = os.path.join(self.directory, str(int(step)))
    dst, i = f"{src}.damaged", 0
    while os.path.exists(dst):
      i += 1
      dst = f"{src}.damaged.{i}"
    if jax.process_index() == 0:
      os.rename(src, dst)
    self._verified.discard(int(step))
    self._mngr.reload()
    return dst

  def latest_intact_step(self) -> int | None:
    """The newest checkpoint that passes :meth:`verify`; damaged newer ones are moved aside.

    Each damaged checkpoint is reported in one warning naming the step, the file and where it was moved.
    """
    for step in sorted(self._mngr.all_steps(), reverse=True):
      problem = self.verify(step)
      if problem is None:
        self._verified.add(int(step))
        return int(step)
      self.report_damaged(step, problem)
    return None

  def report_damaged(self, step: int, problem: str) -> str:
    """Logs that checkpoint ``step`` is damaged (``problem``), moves it aside; returns the new path."""
    dst = self.move_aside(step)
    _log.warning(
      "checkpoint step %d in %s is damaged: %s; moved it to %s (kept for inspection) and using the "
      "newest intact older checkpoint, if any",
      int(step),
      self.directory,
      problem,
      dst,
    )
    return dst

  def _check_intact(self, step: int) -> None:
    if step in self._verified:
      return
    problem = self.verify(step)
    if problem is not None:
      raise CheckpointDamagedError(
        f"checkpoint step {step} in {self.directory} is damaged: {problem}"
      )
    self._verified.add(step)

  def restore_meta(self, step: int | None = None) -> dict[str, Any]:
    """Reads only the JSON ``meta`` item of checkpoint ``step`` (default: latest).

    Raises:
      FileNotFoundError: no checkpoint in the directory.
      CheckpointDamagedError: a file is missing, truncated or changed (names the step and the file).
    """
    step = self._resolve(step)
    self._check_intact(step)
    with self._damage_context(step):
      out = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(out.meta)

  def restore(self, step: int | None, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    """Restores checkpoint ``step`` (default latest) into the structure/shardings of ``abstract_state``.

    Args:
      step: step to restore, or None for the latest.
      abstract_state: pytree of ``jax.ShapeDtypeStruct`` (with ``sharding`` for sharded restores), e.g.
        from ``jax.eval_shape`` of the state initialiser.

    Returns:
      ``(state, meta)``.

    Raises:
      FileNotFoundError: no checkpoint.
      CheckpointMismatchError: stored shapes/dtypes/leaves differ from ``abstract_state`` (names leaves).
      CheckpointDamagedError: a file is missing, truncated or changed (names the step and the file).
    """
    step = self._resolve(step)
    self._check_intact(step)
    with self._damage_context(step):
      return self._restore(step, abstract_state)

  def _restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    where = f"checkpoint {self.directory}/{step}"
    items = self._mngr.item_metadata(step)
    if self._legacy(items):
      stored = items["state"]
      check_compatible(getattr(stored, "tree", stored), abstract_state, where=where)
      out = self._mngr.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
        ),
      )
      return out.state, dict(out.meta)
    abs_vars, abs_train = split_state(abstract_state)
    stored = {k: getattr(items[k], "tree", items[k]) for k in ("variables", "train")}
    check_compatible(stored, {"variables": abs_vars, "train": abs_train}, where=where)
    out = self._mngr.restore(
      step,
      args=ocp.args.Composite(
        variables=ocp.args.StandardRestore(abs_vars),
        train=ocp.args.StandardRestore(abs_train),
        meta=ocp.args.JsonRestore(),
      ),
    )
    return join_state(abstract_state, out.variables, out.train), dict(out.meta)

  def restore_variables(
    self, step: int | None = None, abstract_variables: Any = None
  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restores only ``{'params', 'batch_stats'}`` of checkpoint ``step`` (default latest), for inference.

    Args:
      step: step, or None for the latest.
      abstract_variables: optional pytree of ``jax.ShapeDtypeStruct`` (e.g. ``jax.eval_shape`` of the
        model's ``init``); when given, stored shapes / dtypes are checked against it and the result has its
        shardings. Without it, every array is read onto this process's first device (the checkpoint may
        have been written by any number of processes).

    Returns:
      ``(variables, meta)``.

    Raises:
      FileNotFoundError: no checkpoint.
      CheckpointMismatchError: the stored variables do not fit ``abstract_variables`` (names leaves).
      CheckpointDamagedError: a file is missing, truncated or changed (names the step and the file).
    """
    step = self._resolve(step)
    self._check_intact(step)
    with self._damage_context(step):
      return self._restore_variables(step, abstract_variables)

  def _restore_variables(self, step: int, abstract_variables: Any) -> tuple[Any, dict[str, Any]]:
    where = f"checkpoint {self.directory}/{step}"
    items = self._mngr.item_metadata(step)
    if self._legacy(items):
      out = self._mngr.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
      )
      state = out.state
      get = state.get if isinstance(state, dict) else lambda k: getattr(state, k)
      variables = {"params": get("params"), "batch_stats": get("batch_stats") or {}}
      if abstract_variables is not None:
        check_compatible(variables, abstract_variables, where=where)
      return variables, dict(out.meta)
    stored = items["variables"]
    stored = getattr(stored, "tree", stored)
    if abstract_variables is not None:
      check_compatible(stored, abstract_variables, where=where)
    else:
      # Orbax would restore onto the saved devices, which need not exist here (a checkpoint written by
      # another number of processes): read onto this process's first device instead.
      device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
      abstract_variables = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device), stored
      )
    out = self._mngr.restore(
      step,
      args=ocp.args.Composite(
        variables=ocp.args.StandardRestore(abstract_variables), meta=ocp.args.JsonRestore()
      ),
    )
    variables = dict(out.variables)
    variables.setdefault("batch_stats", {})
    return variables, dict(out.meta)

  def _damage_context(self, step: int):
    """Turns Orbax / tensorstore read errors into one :class:`CheckpointDamagedError` line."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
      try:
        yield
      except CheckpointMismatchError:
        raise
      except Exception as e:  # noqa: BLE001 - any read failure of a verified folder is damage
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise CheckpointDamagedError(
          f"checkpoint step {step} in {self.directory} is damaged: reading it failed with "
          f"{type(e).__name__}: {first}"
        ) from None

    return ctx()

  @staticmethod
  def _legacy(items: Any) -> bool:
    try:
      return items.get("variables") is None and items.get("state") is not None
    except AttributeError:
      return "variables" not in items

  def wait(self) -> None:
    """Blocks until pending saves are on disk (and their digests written)."""
    self._mngr.wait_until_finished()
    self._seal()

  def close(self) -> None:
    """Waits for pending saves, writes their digests and releases the manager."""
    self._mngr.wait_until_finished()
    self._seal()
    self._mngr.close()

  def _resolve(self, step: int | None) -> int:
    if step is None:
      step = self._mngr.latest_step()
      if step is None:
        raise FileNotFoundError(f"no checkpoint found in {self.directory}")
    return int(step)
