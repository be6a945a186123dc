r"""``semdepth export``: a trained model as a serving artifact (StableHLO or ONNX) with its decode.

::

  semdepth export --workdir runs/x --format stablehlo|onnx --out model.shlo \
      [--batch N|dynamic] [--size H,W] [--dtype f32|bf16] [--step N]

The exported function is the model followed by its family's ``decode`` (``semdepth_jax.models.contract``;
bins -> metres, sigmoid / log / normalised -> metres, softmax over classes), so the artifact returns
metres and class probabilities and needs neither this library nor Flax to run:

==============  ============================================================================================
input           ``image`` float32 (B, H, W, 3) RGB in [0, 1] (uint8 / 255), NHWC, at the export size (H, W)
                (default: the training size ``config.image_size``); the model's own normalisation (e.g.
                ImageNet mean / std) is inside the graph. Other image sizes: resize first (antialiased
                bilinear, as ``semdepth predict``).
``depth``       float32 (B, h, w) metres, at the model's output resolution (heads with depth only)
``seg_probs``   float32 (B, h, w, C) softmax class probabilities (segmenting heads only)
==============  ============================================================================================

Formats:

* ``stablehlo``: ``jax.export`` serialization (``PATH``) plus the JSON sidecar ``PATH.json``; reload with
  ``jax.export.deserialize(open(PATH, 'rb').read()).call(image)`` (a dict of the outputs above). The
  weights are constants of the graph. The batch dimension is symbolic (``jax.export.symbolic_shape``) with
  ``--batch dynamic`` (default); a model whose graph needs a fixed batch gets an error saying so (use
  ``--batch N``).
* ``onnx``: through ``jax2onnx`` (``pip install 'semdepth-jax[export]'``), checked with ``onnx.checker``;
  outputs in the order of the sidecar's ``outputs``. An operator the converter does not support stops the
  export with one line naming it and the model.

The sidecar (``PATH.json``) records the input (shape, range, normalisation), the outputs (names, shapes,
units), class names and palette, dataset, evaluation protocol, model name, checkpoint step and the SHA-256
of the checkpoint's files (``checkpoint.sha256``), so a served artifact can be traced back to its run.
``semdepth predict --exported PATH`` runs an artifact on image files with the outputs of ``semdepth
predict``.

Models that read ground-truth labels (3D CNN-S/UP, SCRX or Semantic-MD with ``semantic_source`` ``gt``) cannot
be exported: serving has no labels. Configure them with ``semantic_source={'source': 'predicted', ...}``
(the OHESS planes then come from a trained segmentation run, closed over as constants), or use
SSegDep-Net, which builds its OHESS planes from its own U-Net's predicted labels.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMATS = ("stablehlo", "onnx")
"""Export formats (module docstring)."""

DTYPES = {"f32": jnp.float32, "bf16": jnp.bfloat16}
"""Computation dtypes of the exported graph (``--dtype``); inputs and outputs stay float32."""

OUTPUT_NAMES = ("depth", "seg_probs")
"""Possible outputs, in this order (ONNX output order; the sidecar lists those a model has)."""

OUTPUT_UNITS = {"depth": "metres", "seg_probs": "probability (softmax over classes)"}

SIDECAR_SUFFIX = ".json"
"""The sidecar of artifact ``PATH`` is ``PATH + SIDECAR_SUFFIX``."""

SIDECAR_VERSION = 1

INPUT_NORMALISATION = (
  "RGB uint8 / 255 -> float32 [0, 1]; the model's own normalisation is part of the exported graph"
)


class ExportError(ValueError):
  """A model or option that cannot be exported; the message is one line naming the model and the cause."""


# ----------------------------------------------------------------------------------------------------------
# The serving function.


def serving_model(model: Any, dtype: str = "f32") -> Any:
  """``model`` with computation dtype ``dtype`` (``'f32'`` returns it unchanged).

  Raises:
    ExportError: unknown ``dtype``, or ``bf16`` for a model without a ``dtype`` attribute.
  """
  if dtype not in DTYPES:
    raise ExportError(f"--dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
  if dtype == "f32":
    return model
  if not any(f.name == "dtype" for f in dataclasses.fields(model)):
    raise ExportError(
      f"{type(model).__name__} has no dtype attribute: it can only be exported as f32"
    )
  return model.clone(dtype=DTYPES[dtype])


def serving_fn(
  model: Any, variables: Mapping[str, Any]
) -> Callable[[jax.Array], dict[str, jax.Array]]:
  """The exported computation: image (B, H, W, 3) float32 [0, 1] -> decoded outputs (float32).

  ``{'depth': (B, h, w) metres, 'seg_probs': (B, h, w, C)}`` for the heads the model has: the model in
  inference mode followed by its ``decode`` (``semdepth_jax.models.contract.decode``). ``variables`` are
  closed over (constants of the exported graph).
  """
  from semdepth_jax.models import contract

  options = contract.decode_options(model)

  def fn(image: jax.Array) -> dict[str, jax.Array]:
    out = contract.decode(model.apply(variables, image, train=False), **options)
    return {k: out[k].astype(jnp.float32) for k in OUTPUT_NAMES if k in out}

  return fn


def _model_name(model: Any) -> str:
  from semdepth_jax import models

  for name, cls in models.MODELS.items():
    if type(model) is cls:
      return name
  return type(model).__name__


def check_exportable(model: Any, fn: Callable, input_shape: Sequence[int], name: str) -> dict:
  """Traces ``fn`` once on ``input_shape``; returns the abstract outputs.

  Raises:
    ExportError: the model needs ground-truth labels or does not accept this input size.
  """
  try:
    outs = jax.eval_shape(fn, jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32))
  except ValueError as e:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "label" in msg.lower():
      raise ExportError(
        f"model {name} reads ground-truth labels ({msg}); serving has none: configure its "
        "semantic_source as 'predicted' (or 'none') to export it"
      ) from None
    raise ExportError(f"model {name} cannot run on input {tuple(input_shape)}: {msg}") from None
  except TypeError as e:
    raise ExportError(f"model {name} cannot run on input {tuple(input_shape)}: {e}") from None
  if not outs:
    raise ExportError(f"model {name} has neither a depth nor a segmentation output to export")
  return outs


def export_stablehlo(
  fn: Callable,
  input_size: tuple[int, int],
  *,
  batch: int | str = "dynamic",
  name: str = "model",
  platforms: Sequence[str] | None = None,
) -> jax.export.Exported:
  """``jax.export`` of ``fn`` on float32 (B, H, W, 3) images (B symbolic for ``batch='dynamic'``).

  Raises:
    ExportError: the graph needs a fixed batch (``batch='dynamic'`` failed; the message says to use
      ``--batch N``).
  """
  h, w = input_size
  if batch == "dynamic":
    (b,) = jax.export.symbolic_shape("b")
  else:
    b = int(batch)
  spec = jax.ShapeDtypeStruct((b, h, w, 3), jnp.float32)
  kwargs = {} if platforms is None else {"platforms": tuple(platforms)}
  try:
    return jax.export.export(jax.jit(fn), **kwargs)(spec)
  except Exception as e:  # shape-polymorphism errors come as several types
    if batch != "dynamic":
      raise
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ExportError(
      f"model {name} must be exported with a fixed batch size (the symbolic batch fails: "
      f"{type(e).__name__}: {first[:200]}); use --batch N"
    ) from None


# ----------------------------------------------------------------------------------------------------------
# ONNX.


def _import_onnx() -> tuple[Any, Any]:
  try:
    import jax2onnx
    import onnx
  except ImportError as e:
    raise ExportError(
      f"ONNX export needs jax2onnx and onnx ({e.name} is not installed): pip install "
      "'semdepth-jax[export]'"
    ) from None
  return jax2onnx, onnx


def export_onnx(
  fn: Callable,
  input_size: tuple[int, int],
  *,
  batch: int | str = "dynamic",
  name: str = "model",
  output_names: Sequence[str],
) -> bytes:
  """Converts ``fn`` to an ONNX model (serialized bytes) with ``jax2onnx``; checked by ``onnx.checker``.

  Outputs are in the order of ``output_names``; the input is ``image`` float32 (B, H, W, 3).

  Raises:
    ExportError: jax2onnx / onnx missing, or an operator the converter does not support (the message names
      it and the model).
  """
  jax2onnx, onnx = _import_onnx()
  h, w = input_size
  b = "B" if batch == "dynamic" else int(batch)

  def tuple_fn(image):
    out = fn(image)
    return tuple(out[k] for k in output_names)

  from semdepth_jax.models import layers

  try:
    # Padded max-pools as slice maxima: a padded NHWC reduce_window converts to a 4-D MaxPool kernel
    # that onnxruntime rejects (layers.torch_max_pool_impl; same values). Depthwise convolutions as one
    # grouped convolution (ONNX Conv with group = C, native in onnxruntime), not the CPU slices of
    # layers.depthwise_conv_impl('auto'), whose hundreds of small ops make conversion very slow.
    with layers.torch_max_pool_impl("slices"), layers.depthwise_conv_impl("conv"):
      proto = jax2onnx.to_onnx(
        tuple_fn,
        inputs=[jax.ShapeDtypeStruct((b, h, w, 3), jnp.float32)] if b != "B" else [(b, h, w, 3)],
        model_name=name,
      )
  except Exception as e:  # the converter raises plain exceptions naming the unsupported primitive
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    if batch == "dynamic" and "Symbolic dimension" in first:
      raise ExportError(
        f"model {name} must be exported to ONNX with a fixed batch size (jax2onnx: {first[:200]}); "
        "use --batch N"
      ) from None
    raise ExportError(
      f"model {name} cannot be converted to ONNX by jax2onnx: {type(e).__name__}: {first[:300]}"
    ) from None
  _rename_io(proto, output_names)
  # jax2onnx's intermediate shape hints can disagree with ONNX shape inference around its layout
  # transposes (onnxruntime then warns and merges leniently); they are optional, so drop them and let
  # the strict checker infer shapes itself.
  del proto.graph.value_info[:]
  try:
    onnx.checker.check_model(proto, full_check=True)
  except onnx.checker.ValidationError as e:
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ExportError(f"model {name}: the ONNX graph fails onnx.checker: {first[:300]}") from None
  data = proto.SerializeToString()
  _onnxruntime_smoke_test(data, (1 if b == "B" else b, h, w), name, output_names)
  return data


def _onnxruntime_smoke_test(
  data: bytes, shape: tuple[int, int, int], name: str, output_names: Sequence[str]
) -> None:
  """Runs the converted graph once on zeros in onnxruntime (if installed).

  A graph that converts but does not run (an operator onnxruntime does not support in that form) is
  refused at export, naming the node.

  Raises:
    ExportError: onnxruntime cannot load or run the graph.
  """
  try:
    import onnxruntime as ort
  except ImportError:
    return
  try:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    session.run(list(output_names), {"image": np.zeros((*shape, 3), np.float32)})
  except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidArgument, ...)
    first = " ".join(str(e).split())
    raise ExportError(
      f"model {name}: jax2onnx converts it but onnxruntime cannot run it: {first[:300]}"
    ) from None


def _rename_io(proto: Any, output_names: Sequence[str]) -> None:
  """Names the graph input ``image`` and the outputs ``output_names`` (consumers read them by name)."""
  graph = proto.graph
  renames = {graph.input[0].name: "image"}
  for out, new in zip(graph.output, output_names, strict=True):
    renames[out.name] = new
  for node in graph.node:
    node.input[:] = [renames.get(n, n) for n in node.input]
    node.output[:] = [renames.get(n, n) for n in node.output]
  for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
    vi.name = renames.get(vi.name, vi.name)


# ----------------------------------------------------------------------------------------------------------
# Artifacts: write and load.


def checkpoint_sha256(ckpt_step_dir: str | os.PathLike) -> str:
  """SHA-256 over the files of a checkpoint folder (relative paths and contents, sorted by path)."""
  root = pathlib.Path(ckpt_step_dir)
  h = hashlib.sha256()
  for p in sorted(q for q in root.rglob("*") if q.is_file()):
    h.update(str(p.relative_to(root)).encode("utf-8") + b"\0")
    with open(p, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
  return h.hexdigest()


def sidecar_path(path: str | os.PathLike) -> pathlib.Path:
  """``PATH.json``: the sidecar of artifact ``PATH``."""
  return pathlib.Path(os.fspath(path) + SIDECAR_SUFFIX)


def make_sidecar(
  *,
  fmt: str,
  model_name: str,
  input_size: tuple[int, int],
  batch: int | str,
  dtype: str,
  outputs: Mapping[str, Any],
  meta: Any = None,
  dataset: str | None = None,
  protocol: str | None = None,
  step: int | None = None,
  checkpoint_hash: str | None = None,
  platforms: Sequence[str] | None = None,
) -> dict[str, Any]:
  """The JSON sidecar of an artifact (module docstring); ``outputs`` are abstract arrays (batch first)."""
  b = None if batch == "dynamic" else int(batch)
  side: dict[str, Any] = {
    "semdepth_export_version": SIDECAR_VERSION,
    "format": fmt,
    "model": model_name,
    "dtype": dtype,
    "batch": batch if batch == "dynamic" else int(batch),
    "input": {
      "name": "image",
      "shape": [b, int(input_size[0]), int(input_size[1]), 3],
      "dtype": "float32",
      "layout": "NHWC",
      "range": [0.0, 1.0],
      "normalisation": INPUT_NORMALISATION,
      "resize": "antialiased bilinear to (H, W) (semdepth_jax.resize.image)",
    },
    "outputs": {
      k: {
        "shape": [b, *(int(d) for d in v.shape[1:])],
        "dtype": "float32",
        "units": OUTPUT_UNITS[k],
      }
      for k, v in outputs.items()
    },
    "output_order": list(outputs),
    "jax_version": jax.__version__,
  }
  if platforms is not None:
    side["platforms"] = list(platforms)
  if meta is not None:
    side["dataset"] = dataset or meta.name
    side["class_names"] = list(meta.class_names)
    side["class_colors"] = [list(c) for c in meta.class_colors]
  side["protocol"] = protocol
  side["checkpoint"] = {"step": step, "sha256": checkpoint_hash}
  return side


@dataclasses.dataclass
class ExportedModel:
  """A loaded artifact: ``run(images)`` -> ``{'depth': (B, h, w), 'seg_probs': (B, h, w, C)}`` (numpy).

  Attributes:
    path: the artifact file.
    sidecar: its JSON sidecar (``PATH.json``).
    fmt: ``'stablehlo'`` or ``'onnx'``.
  """

  path: pathlib.Path
  sidecar: dict[str, Any]
  fmt: str
  _call: Callable[[np.ndarray], dict[str, np.ndarray]]

  @property
  def input_size(self) -> tuple[int, int]:
    """(H, W) of the artifact's input."""
    _, h, w, _ = self.sidecar["input"]["shape"]
    return int(h), int(w)

  @property
  def batch(self) -> int | None:
    """Fixed batch size, or None for a symbolic batch."""
    return self.sidecar["input"]["shape"][0]

  def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """Runs the artifact on float32 (B, H, W, 3) images in [0, 1] at :attr:`input_size`.

    A fixed-batch artifact takes any B <= its batch (padded with zeros, results cut back).

    Raises:
      ValueError: wrong image size, or more images than a fixed batch.
    """
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != (*self.input_size, 3):
      raise ValueError(
        f"{self.path}: expects images (B, {self.input_size[0]}, {self.input_size[1]}, 3), "
        f"got {x.shape}"
      )
    n = x.shape[0]
    if self.batch is not None:
      if n > self.batch:
        raise ValueError(f"{self.path}: exported with batch {self.batch}, got {n} images")
      x = np.concatenate([x, np.zeros((self.batch - n, *x.shape[1:]), np.float32)])
    out = self._call(x)
    return {k: np.asarray(v)[:n] for k, v in out.items()}


def load_exported(path: str | os.PathLike) -> ExportedModel:
  """Loads an artifact written by :func:`export_workdir` (its sidecar ``PATH.json`` must be beside it).

  StableHLO runs through ``jax.export.deserialize`` (no model code); ONNX through ``onnxruntime``.

  Raises:
    FileNotFoundError: the artifact or its sidecar is missing.
    ValueError: the sidecar is not a semdepth export sidecar.
    ExportError: an ONNX artifact without onnxruntime installed.
  """
  path = pathlib.Path(path)
  side_path = sidecar_path(path)
  for p in (path, side_path):
    if not p.is_file():
      raise FileNotFoundError(f"{p}: not found (an export writes PATH and PATH{SIDECAR_SUFFIX})")
  side = json.loads(side_path.read_text(encoding="utf-8"))
  fmt = side.get("format") if isinstance(side, dict) else None
  if fmt not in FORMATS:
    raise ValueError(f"{side_path}: 'format' must be one of {FORMATS}, got {fmt!r}")
  order = list(side["output_order"])
  if fmt == "stablehlo":
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    call = jax.jit(exported.call)

    def run(x):
      return jax.device_get(call(jnp.asarray(x)))

  else:
    try:
      import onnxruntime as ort
    except ImportError:
      raise ExportError(
        f"{path}: running an ONNX artifact needs onnxruntime: pip install 'semdepth-jax[export]'"
      ) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(x):
      outs = session.run(order, {"image": x})
      return dict(zip(order, outs, strict=True))

  return ExportedModel(path=path, sidecar=side, fmt=fmt, _call=run)


def export_model(
  model: Any,
  variables: Mapping[str, Any],
  out: str | os.PathLike,
  *,
  fmt: str,
  input_size: tuple[int, int],
  batch: int | str = "dynamic",
  dtype: str = "f32",
  meta: Any = None,
  dataset: str | None = None,
  protocol: str | None = None,
  step: int | None = None,
  checkpoint_hash: str | None = None,
  platforms: Sequence[str] | None = None,
) -> pathlib.Path:
  """Exports ``model`` with ``variables`` to ``out`` (artifact) and ``out.json`` (sidecar).

  Args:
    model: a registered model (linen module following ``semdepth_jax.models.contract``).
    variables: its ``{'params': ..., 'batch_stats': ...}``.
    out: artifact path.
    fmt: ``'stablehlo'`` or ``'onnx'``.
    input_size: (H, W) of the exported input.
    batch: ``'dynamic'`` (symbolic) or a fixed batch size >= 1.
    dtype: ``'f32'`` or ``'bf16'`` computation.
    meta: ``DatasetMeta`` (class names, palette) for the sidecar.
    dataset: dataset name for the sidecar (default ``meta.name``; a workdir's ``config.dataset``).
    protocol: evaluation protocol for the sidecar.
    step: checkpoint step for the sidecar.
    checkpoint_hash: SHA-256 of the checkpoint for the sidecar.
    platforms: StableHLO lowering platforms (default: the current backend).
    config: config override (``ConfigDict`` or ``PATH[:ARGS]``; default the workdir's ``config.json``),
      e.g. to export a model with ``semantic_source`` set to predicted labels.

  Returns:
    The artifact path.

  Raises:
    ExportError: anything that makes the model not exportable (one line naming the model and the cause).
  """
  if fmt not in FORMATS:
    raise ExportError(f"--format must be one of {FORMATS}, got {fmt!r}")
  if batch != "dynamic" and (not isinstance(batch, int) or batch < 1):
    raise ExportError(f"--batch must be 'dynamic' or an integer >= 1, got {batch!r}")
  name = _model_name(model)
  model = serving_model(model, dtype)
  fn = serving_fn(model, variables)
  h, w = int(input_size[0]), int(input_size[1])
  outs = check_exportable(model, fn, (1 if batch == "dynamic" else batch, h, w, 3), name)
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  if fmt == "stablehlo":
    exported = export_stablehlo(fn, (h, w), batch=batch, name=name, platforms=platforms)
    data = bytes(exported.serialize())
    platforms = exported.platforms
  else:
    data = export_onnx(fn, (h, w), batch=batch, name=name, output_names=list(outs))
    platforms = None
  side = make_sidecar(
    fmt=fmt,
    model_name=name,
    input_size=(h, w),
    batch=batch,
    dtype=dtype,
    outputs=outs,
    meta=meta,
    dataset=dataset,
    protocol=protocol,
    step=step,
    checkpoint_hash=checkpoint_hash,
    platforms=platforms,
  )
  out.write_bytes(data)
  sidecar_path(out).write_text(json.dumps(side, indent=2) + "\n", encoding="utf-8")
  return out


def export_workdir(
  workdir: str | os.PathLike,
  out: str | os.PathLike,
  *,
  fmt: str = "stablehlo",
  batch: int | str = "dynamic",
  size: tuple[int, int] | None = None,
  dtype: str = "f32",
  step: int | None = None,
  platforms: Sequence[str] | None = None,
  config: Any = None,
) -> pathlib.Path:
  """Exports a training workdir's model (``predict.load_trained``) with its checkpoint step and hash.

  Args:
    workdir: folder written by ``semdepth train``.
    out: artifact path (the sidecar goes to ``out.json``).
    fmt: ``'stablehlo'`` or ``'onnx'``.
    batch: ``'dynamic'`` or a fixed batch size.
    size: (H, W) of the exported input (default: the training size ``config.image_size``).
    dtype: ``'f32'`` or ``'bf16'``.
    step: checkpoint step (default: the latest).
    platforms: StableHLO lowering platforms (default: the current backend).
    config: config override (``ConfigDict`` or ``PATH[:ARGS]``; default the workdir's ``config.json``),
      e.g. to export a model with ``semantic_source`` set to predicted labels.

  Returns:
    The artifact path.

  Raises:
    FileNotFoundError: no config / checkpoint in ``workdir``.
    ExportError: the model cannot be exported (one line).
  """
  from semdepth_jax import predict

  trained = predict.load_trained(workdir, step=step, config=config)
  ckpt = pathlib.Path(trained.workdir) / "checkpoints" / str(trained.step)
  digest = checkpoint_sha256(ckpt) if ckpt.is_dir() else None
  protocol = trained.config.get("eval", {}).get("protocol") or None
  return export_model(
    trained.model,
    trained.variables,
    out,
    fmt=fmt,
    input_size=tuple(size) if size else trained.input_size,
    batch=batch,
    dtype=dtype,
    meta=trained.meta,
    dataset=str(trained.config.dataset),
    protocol=protocol,
    step=trained.step,
    checkpoint_hash=digest,
    platforms=platforms,
  )


# ----------------------------------------------------------------------------------------------------------
# CLI.


def _parse_batch(text: str) -> int | str:
  if text == "dynamic":
    return text
  try:
    b = int(text)
  except ValueError:
    b = 0
  if b < 1:
    raise argparse.ArgumentTypeError(f"--batch must be 'dynamic' or an integer >= 1, got {text!r}")
  return b


def _parse_size(text: str) -> tuple[int, int]:
  try:
    h, w = (int(v) for v in text.split(","))
  except ValueError:
    h = w = 0
  if h < 1 or w < 1:
    raise argparse.ArgumentTypeError(f"--size must be 'H,W' (two integers >= 1), got {text!r}")
  return h, w


def add_parser(subparsers) -> argparse.ArgumentParser:
  """Registers the ``export`` sub-command (see ``semdepth_jax.main``)."""
  p = subparsers.add_parser(
    "export",
    help="export a trained model (with its decode) as StableHLO or ONNX",
    description=__doc__.split("\n\n")[0],
    epilog=(
      "Writes PATH (the artifact) and PATH.json (input size and normalisation, outputs and units, classes "
      "and palette, dataset, protocol, checkpoint step and SHA-256). Run it with `semdepth predict "
      "--exported PATH`. Exit status 2 when the model cannot be exported (the message says why)."
    ),
  )
  p.add_argument("--workdir", required=True, help="training workdir (config.json + checkpoints/)")
  p.add_argument("--format", choices=FORMATS, required=True, help="artifact format")
  p.add_argument("--out", required=True, help="artifact path (sidecar: PATH.json)")
  p.add_argument(
    "--batch", type=_parse_batch, default="dynamic", help="N or dynamic (default: dynamic)"
  )
  p.add_argument(
    "--size", type=_parse_size, default=None, help="H,W input (default: training size)"
  )
  p.add_argument("--dtype", choices=tuple(DTYPES), default="f32", help="computation dtype")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  p.add_argument("--config", default=None, help="config override PATH[:ARGS] (default: workdir's)")
  p.add_argument(
    "--platforms",
    default=None,
    help="StableHLO lowering platforms, comma-separated, e.g. cpu,cuda (default: this machine's)",
  )
  p.set_defaults(func=run)
  return p


def run(args: argparse.Namespace) -> int:
  """Handler of ``semdepth export``: 0 = written, 2 = usage error or a model that cannot be exported."""
  from semdepth_jax.train.checkpoint import CheckpointDamagedError

  platforms = args.platforms.split(",") if args.platforms else None
  try:
    out = export_workdir(
      args.workdir,
      args.out,
      fmt=args.format,
      batch=args.batch,
      size=args.size,
      dtype=args.dtype,
      step=args.step,
      platforms=platforms,
      config=args.config,
    )
  except (ExportError, FileNotFoundError, ValueError, CheckpointDamagedError) as e:
    print(f"semdepth export: error: {e}", file=sys.stderr)
    return 2
  side = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
  print(
    f"exported {side['model']} (step {side['checkpoint']['step']}, {args.format}, batch "
    f"{side['batch']}, input {side['input']['shape'][1]}x{side['input']['shape'][2]}) to {out} "
    f"(+ {sidecar_path(out).name})"
  )
  return 0
