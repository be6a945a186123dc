"""Metric writers (JSONL + TensorBoard event files), the progress bar and the finite check.

TensorBoard files are written with ``tensorboardX`` (no TensorFlow needed). Only process 0 writes; other
processes get no-op writers.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np


def _to_float(v: Any) -> float | None:
  try:
    arr = np.asarray(v)
  except Exception:  # noqa: BLE001 - non-numeric values are skipped
    return None
  if arr.size != 1 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
    return None
  return float(arr.reshape(()))


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
  """Keeps the scalar numeric entries of ``metrics`` as Python floats."""
  out = {}
  for k, v in metrics.items():
    f = _to_float(v)
    if f is not None:
      out[k] = f
  return out


class MetricWriter:
  """Writes scalar metrics to ``<logdir>/metrics.jsonl`` and TensorBoard events in ``<logdir>/tb``.

  Each JSONL line is ``{"step": int, "split": str, "time": unix seconds, <name>: float, ...}``; TensorBoard
  tags are ``<split>/<name>``. Appends, so a resumed run continues the same files.

  Args:
    logdir: output folder (created).
    tensorboard: also write TensorBoard event files.
    enabled: False gives a no-op writer (non-zero processes).
  """

  def __init__(self, logdir: str | os.PathLike, *, tensorboard: bool = True, enabled: bool = True):
    self.enabled = enabled
    self.logdir = os.fspath(logdir)
    self._jsonl = None
    self._tb = None
    if not enabled:
      return
    os.makedirs(self.logdir, exist_ok=True)
    self._jsonl = open(os.path.join(self.logdir, "metrics.jsonl"), "a", encoding="utf-8")  # noqa: SIM115
    if tensorboard:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(os.path.join(self.logdir, "tb"))

  def write(self, step: int, values: Mapping[str, Any], split: str = "train") -> dict[str, float]:
    """Writes the scalar entries of ``values`` at ``step``; returns them as floats."""
    vals = scalars(values)
    if not self.enabled:
      return vals
    record = {"step": int(step), "split": split, "time": round(time.time(), 3)}
    record.update({k: (v if math.isfinite(v) else str(v)) for k, v in vals.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in vals.items():
        self._tb.add_scalar(f"{split}/{k}", v, int(step))
    return vals

  @property
  def writes_images(self) -> bool:
    """Whether :meth:`write_images` writes anything (enabled, with TensorBoard)."""
    return self.enabled and self._tb is not None

  def write_images(self, step: int, images: Mapping[str, Any], prefix: str = "") -> None:
    """Writes uint8 (H, W, 3) images (``viz.summary_images`` output) to TensorBoard; else a no-op."""
    if self.writes_images:
      from semdepth_jax import viz

      viz.write_image_summaries(self._tb, step, images, prefix)

  def flush(self) -> None:
    """Flushes both outputs."""
    if self._jsonl is not None:
      self._jsonl.flush()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    """Closes both outputs."""
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads a ``metrics.jsonl`` file into a list of dicts."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


_UNKNOWN = object()


def check_finite(
  step: int, metrics: Mapping[str, Any], last_checkpoint: Any = _UNKNOWN, hint: str = ""
) -> None:
  """Raises if the loss or the gradient norm of ``step`` is NaN or infinite.

  Args:
    step: the 1-based number of the step that produced ``metrics`` (named in the message).
    metrics: host metrics from the train step (``loss``, ``grad_norm``, optional ``finite``).
    last_checkpoint: step of the newest checkpoint of the run, or None when none has been written (the
      message then says that there is nothing to resume from); omitted = not known.
    hint: a further sentence for the message (the run's likely cause, e.g. random initial weights).

  Raises:
    FloatingPointError: naming the step and the offending values. The train step does not apply a
      non-finite update; the message says which checkpoint (if any) predates it.
  """
  loss = _to_float(metrics.get("loss", 0.0))
  gnorm = _to_float(metrics.get("grad_norm", 0.0))
  finite_flag = metrics.get("finite", True)
  ok = bool(np.asarray(finite_flag)) and all(v is None or math.isfinite(v) for v in (loss, gnorm))
  if not ok:
    if last_checkpoint is None:
      where = (
        "No checkpoint has been written yet, so there is nothing to resume from (a restart begins "
        "again at step 0)."
      )
    elif last_checkpoint is _UNKNOWN:
      where = "Checkpoints already in the workdir predate it."
    else:
      where = (
        f"The newest checkpoint (step {int(last_checkpoint)}) predates it and is intact; a restart "
        "resumes from it."
      )
    raise FloatingPointError(
      f"non-finite training value at step {step}: loss={loss}, grad_norm={gnorm}. The update was not "
      f"applied. {where} Check the batch (NaN/inf inputs), lower the learning rate or enable "
      "optimizer.grad_clip_norm." + (f" {hint}" if hint else "")
    )


def rewrite_jsonl(path: str | os.PathLike, keep: Any) -> int:
  """Keeps the records of ``metrics.jsonl`` for which ``keep(record)`` is true; returns how many went.

  Lines that do not parse (a write cut short by a kill) are dropped too. The file is replaced atomically
  (written to ``<path>.tmp``, then renamed); a missing file is left missing.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    return 0
  kept, dropped = [], 0
  with open(path, encoding="utf-8") as f:
    for line in f:
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except ValueError:
        dropped += 1
        continue
      if keep(record):
        kept.append(line if line.endswith("\n") else line + "\n")
      else:
        dropped += 1
  if dropped:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(kept)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  return dropped


class Progress:
  """A tqdm bar over training steps showing the loss and examples/s (process 0 only).

  Args:
    total: final step number.
    initial: step the run starts (or resumes) from.
    desc: bar label (e.g. the stage name).
    enabled: False disables the bar (non-zero processes, tests).
  """

  def __init__(self, total: int, initial: int = 0, desc: str = "train", enabled: bool = True):
    self._bar = None
    self._last_time = time.perf_counter()
    self._examples = 0
    if enabled and jax.process_index() == 0:
      from tqdm.auto import tqdm

      self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=True)

  def update(self, n_steps: int, n_examples: int, loss: float | None = None) -> float:
    """Advances by ``n_steps``; returns the examples/s since the previous call with a loss."""
    self._examples += n_examples
    rate = 0.0
    if self._bar is not None:
      self._bar.update(n_steps)
    if loss is not None:
      now = time.perf_counter()
      rate = self._examples / max(now - self._last_time, 1e-9)
      self._last_time, self._examples = now, 0
      if self._bar is not None:
        self._bar.set_postfix(loss=f"{loss:.4g}", ex_per_s=f"{rate:.2f}")
    return rate

  def close(self) -> None:
    """Closes the bar."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None
