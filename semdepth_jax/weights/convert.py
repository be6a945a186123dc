"""``semdepth convert-weights``: pretrained PyTorch / safetensors / Keras weights -> an Orbax checkpoint.

Converts a file the user supplies (nothing is ever downloaded) onto a registered backbone's variables
through the architecture's key table (:mod:`semdepth_jax.weights.keymap`,
:data:`semdepth_jax.models.backbones.BACKBONES`)::

  semdepth convert-weights --arch resnet101 --src resnet101-63fe2227.pth --out weights/resnet101
  semdepth convert-weights --arch resnet18_places365 --src wideresnet18_places365.pth.tar --out w/places
  semdepth convert-weights --arch resnet50 --src r50.safetensors --out w/r50 --set num_classes=0

Readers (by file suffix):

* ``.pth`` / ``.pt`` / ``.pth.tar`` / ``.tar`` / ``.bin``: ``torch.load(map_location='cpu',
  weights_only=True)`` (torch is imported only here; it is the ``parity`` extra). A state dict wrapped as
  ``{'state_dict': ...}`` (training checkpoints such as Places365's) or ``{'model': ...}`` is unwrapped; a
  ``module.`` prefix (DataParallel) is stripped by the key table.
* ``.safetensors``: ``safetensors.numpy`` (no torch).
* ``.h5`` / ``.hdf5``: Keras weights (``model.save_weights`` or a whole-model file with a ``model_weights``
  group), one key per ``layer/weight`` (e.g. ``block1_conv1/kernel``; the ``:0`` suffix dropped). Keras
  layouts are already HWIO / (in, out), so Keras key tables use ``copy`` rules.

The output directory holds ``variables/`` (an Orbax ``StandardCheckpointer`` checkpoint of
``{'params': ..., 'batch_stats': ...}``, only the non-empty collections) and ``metadata.json``
(architecture, the attributes set with ``--set``, source file name / size / sha256, the preprocessing the
weights expect, the key table's reference and the library version). :func:`load_converted` reads it back;
:func:`merge_pretrained` puts the variables into a larger model's tree (the backbone subtree).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import hashlib
import json
import pathlib
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from semdepth_jax.weights import keymap

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
VARIABLES_DIR = "variables"
TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".tar", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors",)
H5_SUFFIXES = (".h5", ".hdf5")
COLLECTIONS = ("params", "batch_stats")


class WeightsFileError(ValueError):
  """A weights file cannot be read or does not fit the architecture (the message names the file)."""


class PretrainedMismatchError(ValueError):
  """Pretrained variables do not fit the target subtree; the message lists every path."""


def _preprocessings() -> dict[str, Any]:
  from semdepth_jax.models import backbones

  return {"imagenet": backbones.IMAGENET, "caffe_bgr": backbones.CAFFE_BGR}


# ------------------------------------------------------------------------------------------------------
# Readers.
# ------------------------------------------------------------------------------------------------------
def _suffix_kind(path: pathlib.Path) -> str:
  name = path.name.lower()
  for kind, suffixes in (
    ("torch", TORCH_SUFFIXES),
    ("safetensors", SAFETENSORS_SUFFIXES),
    ("h5", H5_SUFFIXES),
  ):
    if name.endswith(suffixes):
      return kind
  known = TORCH_SUFFIXES + SAFETENSORS_SUFFIXES + H5_SUFFIXES
  raise WeightsFileError(
    f"{path}: unknown weights format (suffix must be one of {', '.join(known)})"
  )


def _unwrap(obj: Any, path: pathlib.Path) -> Mapping[str, Any]:
  """The state dict inside a loaded object: itself, or its ``'state_dict'`` / ``'model'`` entry."""
  if not isinstance(obj, Mapping):
    raise WeightsFileError(
      f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}"
    )
  for wrapper in ("state_dict", "model"):
    if isinstance(obj.get(wrapper), Mapping):
      return obj[wrapper]
  return obj


def _read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError as e:
    raise WeightsFileError(
      f"{path}: reading PyTorch files needs torch (pip install -e '.[parity]'); or convert it to "
      f".safetensors first ({e})"
    ) from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # noqa: BLE001 (any unpickling failure is reported with the file name)
    reason = " ".join(str(e).split())[:300]
    raise WeightsFileError(
      f"{path}: torch.load(weights_only=True) failed (save the model's state_dict(), not the "
      f"pickled model): {type(e).__name__}: {reason}"
    ) from e
  out = {}
  for k, v in _unwrap(obj, path).items():
    if not isinstance(v, torch.Tensor):
      raise WeightsFileError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
    v = v.detach().cpu()
    if v.dtype == torch.bfloat16:
      v = v.float()
    out[str(k)] = v.numpy()
  return out


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file

  try:
    return dict(load_file(str(path)))
  except Exception as e:  # noqa: BLE001
    raise WeightsFileError(f"{path}: not a readable safetensors file: {e}") from e


def _read_h5(path: pathlib.Path) -> dict[str, np.ndarray]:
  import h5py

  def attr_names(node, attr):
    return [n.decode() if isinstance(n, bytes) else str(n) for n in node.attrs.get(attr, [])]

  try:
    with h5py.File(path, "r") as f:
      root = f.get("model_weights", f)
      out = {}
      layer_names = attr_names(root, "layer_names")
      if layer_names:
        for layer in layer_names:
          group = root[layer]
          for wname in attr_names(group, "weight_names"):
            short = wname[: -len(":0")] if wname.endswith(":0") else wname
            short = short[len(layer) + 1 :] if short.startswith(layer + "/") else short
            out[f"{layer}/{short}"] = np.asarray(group[wname])
      else:

        def visit(name, node):
          if isinstance(node, h5py.Dataset):
            out[name[: -len(":0")] if name.endswith(":0") else name] = np.asarray(node)

        root.visititems(visit)
  except OSError as e:
    raise WeightsFileError(f"{path}: not a readable HDF5 file: {e}") from e
  return out


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Reads a weights file into ``{key: numpy array}`` (see the module docstring for the formats).

  Raises:
    WeightsFileError: missing file, unknown suffix, unreadable content, or non-tensor entries (the
      message names the file).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise WeightsFileError(f"{path}: no such file")
  kind = _suffix_kind(path)
  reader = {"torch": _read_torch, "safetensors": _read_safetensors, "h5": _read_h5}[kind]
  state = reader(path)
  if not state:
    raise WeightsFileError(f"{path}: holds no arrays")
  return state


def sha256(path: str | pathlib.Path) -> str:
  """Hex SHA-256 of a file (read in 1 MiB chunks)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


# ------------------------------------------------------------------------------------------------------
# Attributes (--set) <-> JSON.
# ------------------------------------------------------------------------------------------------------
_BN_NAMES = ("torch", "frozen", "keras")


def _bn_specs() -> dict[str, Any]:
  from semdepth_jax.models import layers

  return {"torch": layers.TORCH_BN, "frozen": layers.FROZEN_BN, "keras": layers.KERAS_BN}


def parse_set(items: Sequence[str]) -> dict[str, Any]:
  """``['depths=(1,1,1,1)', 'bn=frozen', ...]`` -> attributes.

  Values are Python literals (``ast.literal_eval``); anything else is a string. ``bn`` accepts
  ``torch`` / ``frozen`` / ``keras`` or a dict of :class:`~semdepth_jax.models.layers.BatchNormSpec`
  fields.

  Raises:
    ValueError: an item without ``=``.
  """
  out = {}
  for item in items:
    key, sep, raw = item.partition("=")
    if not sep or not key:
      raise ValueError(f"--set expects key=value, got {item!r}")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    out[key.strip()] = decode_attributes({key.strip(): value})[key.strip()]
  return out


def encode_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
  """JSON-ready attributes: tuples become lists, BatchNorm specs ``{'__batch_norm_spec__': fields}``."""

  def enc(v):
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
      return {"__batch_norm_spec__": dataclasses.asdict(v)}
    if isinstance(v, list | tuple):
      return [enc(x) for x in v]
    if isinstance(v, np.generic):
      return v.item()
    return v

  return {k: enc(v) for k, v in attributes.items()}


def decode_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
  """Inverse of :func:`encode_attributes` (lists become tuples, so modules stay hashable)."""
  from semdepth_jax.models import layers

  def dec(key, v):
    if isinstance(v, dict) and set(v) == {"__batch_norm_spec__"}:
      return layers.BatchNormSpec(**v["__batch_norm_spec__"])
    if key == "bn" and isinstance(v, dict):
      return layers.BatchNormSpec(**v)
    if key == "bn" and isinstance(v, str):
      specs = _bn_specs()
      if v not in specs:
        raise ValueError(f"--set bn= must be one of {_BN_NAMES} or a dict, got {v!r}")
      return specs[v]
    if isinstance(v, list | tuple):
      return tuple(dec(None, x) for x in v)
    return v

  return {k: dec(k, v) for k, v in attributes.items()}


# ------------------------------------------------------------------------------------------------------
# Conversion.
# ------------------------------------------------------------------------------------------------------
def abstract_variables(module: Any, input_size: int = 224) -> dict[str, Any]:
  """``jax.eval_shape`` of ``module.init`` on a (1, input_size, input_size, 3) image (no computation)."""
  import jax
  import jax.numpy as jnp

  x = jax.ShapeDtypeStruct((1, input_size, input_size, 3), jnp.float32)
  return dict(jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x))


def convert(
  arch: str,
  src: str | pathlib.Path,
  out: str | pathlib.Path,
  *,
  attributes: Mapping[str, Any] | None = None,
  preprocessing: str | None = None,
  allow_unused: Sequence[str] = (),
  overwrite: bool = False,
) -> dict[str, Any]:
  """Converts ``src`` for backbone ``arch`` and writes ``out/variables`` + ``out/metadata.json``.

  Args:
    arch: a name in :data:`semdepth_jax.models.backbones.BACKBONES`.
    src: the weights file.
    out: output directory (created).
    attributes: module attributes overriding the registry's defaults (also passed to the key table).
    preprocessing: ``'imagenet'`` or ``'caffe_bgr'`` to record instead of the architecture's default
      (e.g. ImageNet torchvision weights converted for ``vgg16_deeplab``).
    allow_unused: prefixes of source keys that may stay unused.
    overwrite: replace an existing conversion in ``out``.

  Returns:
    The metadata written.

  Raises:
    KeyError: unknown ``arch`` (lists the known ones).
    ValueError: bad attributes / preprocessing, or ``out`` already holds a conversion.
    WeightsFileError: the file cannot be read or does not fit (every problem listed).
  """
  import orbax.checkpoint as ocp

  import semdepth_jax
  from semdepth_jax.models import backbones

  entry = backbones.get_backbone_entry(arch)
  attributes = dict(attributes or {})
  try:
    module = entry.build(**attributes)
    table = entry.key_table(**attributes)
  except TypeError as e:
    raise ValueError(f"--set for {arch}: {e}") from e
  preps = _preprocessings()
  if preprocessing is None:
    prep = entry.preprocessing(**attributes)
  elif preprocessing in preps:
    prep = preps[preprocessing]
  else:
    raise ValueError(f"preprocessing must be one of {sorted(preps)}, got {preprocessing!r}")
  out = pathlib.Path(out)
  var_dir = out / VARIABLES_DIR
  if (var_dir.exists() or (out / METADATA_FILE).exists()) and not overwrite:
    raise ValueError(f"{out} already holds a conversion (pass --overwrite to replace it)")

  src = pathlib.Path(src)
  state = read_state_dict(src)
  target = abstract_variables(module)
  try:
    variables = keymap.apply_key_table(
      state, table, target, allow_unused=tuple(allow_unused), where=str(src)
    )
  except keymap.KeyTableError as e:
    raise WeightsFileError(str(e)) from e
  variables = {c: v for c, v in variables.items() if v}

  out.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(var_dir.absolute(), variables, force=overwrite)
  metadata = {
    "format_version": FORMAT_VERSION,
    "architecture": arch,
    "attributes": encode_attributes(attributes),
    "reference": entry.reference,
    "source": {"file": src.name, "bytes": src.stat().st_size, "sha256": sha256(src)},
    "preprocessing": prep.as_dict(),
    "collections": sorted(variables),
    "semdepth_jax_version": semdepth_jax.__version__,
    "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
  }
  (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
  return metadata


def save_variables(
  variables: Mapping[str, Any],
  out: str | pathlib.Path,
  *,
  architecture: str,
  description: str = "",
  overwrite: bool = False,
) -> dict[str, Any]:
  """Writes variables already in this library's layout as a converted-weights directory.

  For initialising a run from another run's (sub)tree or from hand-made weights through
  ``config.model_init``, which reads any directory in :func:`load_converted`'s format.

  Args:
    variables: ``{'params': ..., 'batch_stats': ...}`` (arrays).
    out: output directory.
    architecture: recorded in the metadata (a model or backbone name; informational).
    description: where the variables come from (recorded).
    overwrite: replace an existing directory's content.

  Returns:
    The metadata written.

  Raises:
    ValueError: ``out`` already holds a conversion and ``overwrite`` is False.
  """
  import jax
  import orbax.checkpoint as ocp

  import semdepth_jax

  out = pathlib.Path(out)
  var_dir = out / VARIABLES_DIR
  if (var_dir.exists() or (out / METADATA_FILE).exists()) and not overwrite:
    raise ValueError(f"{out} already holds a conversion (pass overwrite=True to replace it)")
  variables = {c: jax.device_get(dict(v)) for c, v in variables.items() if v}
  out.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(var_dir.absolute(), variables, force=overwrite)
  metadata = {
    "format_version": FORMAT_VERSION,
    "architecture": architecture,
    "attributes": {},
    "reference": description,
    "source": None,
    "preprocessing": None,
    "collections": sorted(variables),
    "semdepth_jax_version": semdepth_jax.__version__,
    "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
  }
  (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
  return metadata


def load_converted(directory: str | pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]]:
  """Reads a :func:`convert` output.

  Returns:
    ``(variables, metadata)``: ``{'params': ..., 'batch_stats': ...}`` (numpy arrays; a collection the
    architecture lacks is ``{}``) and the ``metadata.json`` dict. ``build_from_metadata(metadata)`` gives
    the matching module.

  Raises:
    WeightsFileError: the directory lacks ``metadata.json`` / ``variables`` or they are unreadable.
  """
  import orbax.checkpoint as ocp

  directory = pathlib.Path(directory)
  meta_path, var_dir = directory / METADATA_FILE, directory / VARIABLES_DIR
  if not meta_path.is_file() or not var_dir.is_dir():
    raise WeightsFileError(
      f"{directory}: not a converted-weights directory (needs {METADATA_FILE} and {VARIABLES_DIR}/; "
      "make one with `semdepth convert-weights`)"
    )
  try:
    metadata = json.loads(meta_path.read_text(encoding="utf-8"))
  except (OSError, ValueError) as e:
    raise WeightsFileError(f"{meta_path}: unreadable metadata: {e}") from e
  with ocp.StandardCheckpointer() as ckpt:
    restored = ckpt.restore(var_dir.absolute())
  variables = {c: dict(restored.get(c, {})) for c in COLLECTIONS}
  return variables, metadata


def build_from_metadata(metadata: Mapping[str, Any]) -> Any:
  """The backbone module a converted checkpoint belongs to (registry defaults + stored attributes)."""
  from semdepth_jax.models import backbones

  entry = backbones.get_backbone_entry(metadata["architecture"])
  return entry.build(**decode_attributes(metadata.get("attributes", {})))


def preprocessing_from_metadata(metadata: Mapping[str, Any]) -> Any:
  """The :class:`~semdepth_jax.models.backbones.Preprocessing` the converted weights expect."""
  from semdepth_jax.models import backbones

  p = dict(metadata["preprocessing"])
  for key in ("mean", "std"):
    p[key] = tuple(float(v) for v in p[key])
  return backbones.Preprocessing(**p)


# ------------------------------------------------------------------------------------------------------
# Merging into a model.
# ------------------------------------------------------------------------------------------------------
def _subtree(tree: Mapping[str, Any], parts: Sequence[str]) -> Mapping[str, Any] | None:
  node: Any = tree
  for p in parts:
    if not isinstance(node, Mapping) or p not in node:
      return None
    node = node[p]
  return node if isinstance(node, Mapping) else None


def _flat_by_path(variables: Mapping[str, Any], parts: Sequence[str], what: str) -> dict[str, Any]:
  """``{path inside the subtree: (collection, leaf)}`` over every collection."""
  out: dict[str, tuple[str, Any]] = {}
  for collection, tree in variables.items():
    sub = _subtree(tree, parts) if parts else tree
    if sub is None:
      continue
    for path, leaf in keymap.flatten(sub).items():
      if path in out:
        raise ValueError(
          f"merge_pretrained: {what} has {path} in both {out[path][0]} and {collection}"
        )
      out[path] = (collection, leaf)
  return out


def merge_pretrained(
  target_variables: Mapping[str, Any],
  pretrained_variables: Mapping[str, Any],
  *,
  prefix: str,
  exclude: Sequence[str] = (),
) -> dict[str, Any]:
  """Strictly merges pretrained backbone variables into the subtree ``prefix`` of a model's variables.

  Leaves are matched by their path inside the subtree (``layer1/block0/conv1/kernel``), whatever their
  collection: a pretrained BatchNorm ``scale`` in ``params`` fills a frozen-BN model's ``batch_stats``
  ``scale`` and vice versa; the target's collection is kept. Leaves whose path matches an ``exclude``
  regular expression (``re.search`` on the path inside the subtree *or* on ``prefix/path``; e.g.
  ``'^fc/'``) keep the target's value and are ignored on the pretrained side.

  Args:
    target_variables: the model's variables, ``{'params': ..., 'batch_stats': ...}`` (from ``init``).
    pretrained_variables: e.g. the first value of :func:`load_converted`.
    prefix: ``/``-joined path of the backbone inside each collection (``'backbone'``,
      ``'encoder/backbone'``; ``''`` = the whole tree).
    exclude: regular expressions of paths not to load.

  Returns:
    Variables with ``target_variables``' structure (plain dicts): pretrained leaves cast to the target
    leaf's dtype (numpy), every other leaf the target's own.

  Raises:
    PretrainedMismatchError: ``prefix`` is in no collection, or there are missing / unexpected paths or
      shape mismatches; one message lists every path with the expected (target) and actual (pretrained)
      shapes.
    ValueError: an ``exclude`` entry is not a valid regular expression.
  """
  parts = [p for p in prefix.split("/") if p]
  patterns = []
  for pat in exclude:
    try:
      patterns.append(re.compile(pat))
    except re.error as e:
      raise ValueError(f"merge_pretrained: exclude pattern {pat!r} is not a regex: {e}") from e

  def excluded(path: str) -> bool:
    full = "/".join([*parts, path])
    return any(p.search(path) or p.search(full) for p in patterns)

  tgt = _flat_by_path(target_variables, parts, "the target")
  if not tgt:
    tops = {c: sorted(t) for c, t in target_variables.items() if isinstance(t, Mapping)}
    raise PretrainedMismatchError(
      f"merge_pretrained: no subtree {prefix!r} in the target variables (top-level keys: {tops})"
    )
  pre = _flat_by_path(pretrained_variables, [], "the pretrained variables")
  problems, replace = [], {}
  for path in sorted(set(tgt) | set(pre)):
    if excluded(path):
      continue
    full = "/".join([*parts, path])
    if path not in pre:
      c, leaf = tgt[path]
      problems.append(f"missing in pretrained: {c}/{full} (expected {tuple(np.shape(leaf))})")
    elif path not in tgt:
      c, leaf = pre[path]
      problems.append(f"unexpected in pretrained: {c}/{path} {tuple(np.shape(leaf))}")
    else:
      (tc, tleaf), (_, pleaf) = tgt[path], pre[path]
      if tuple(np.shape(tleaf)) != tuple(np.shape(pleaf)):
        problems.append(
          f"shape mismatch at {tc}/{full}: expected {tuple(np.shape(tleaf))}, "
          f"got {tuple(np.shape(pleaf))}"
        )
      else:
        replace[(tc, path)] = np.asarray(pleaf).astype(tleaf.dtype)
  if problems:
    raise PretrainedMismatchError(
      f"pretrained weights do not fit {prefix or 'the model'!r} ({len(problems)} problems; "
      "exclude= patterns skip paths):\n  " + "\n  ".join(problems)
    )

  def rebuild(node, collection, path):
    if isinstance(node, Mapping):
      return {k: rebuild(v, collection, [*path, str(k)]) for k, v in node.items()}
    rel = path[len(parts) :]
    if path[: len(parts)] == parts:
      return replace.get((collection, "/".join(rel)), node)
    return node

  return {c: rebuild(t, c, []) for c, t in target_variables.items()}


# ------------------------------------------------------------------------------------------------------
# CLI.
# ------------------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
  """Registers ``convert-weights`` on ``subparsers`` (see ``semdepth_jax.main``)."""
  p = subparsers.add_parser(
    "convert-weights",
    help="convert pretrained PyTorch / safetensors / Keras weights for a backbone",
    description=(
      "Convert a pretrained weights file you supply onto a registered backbone's variables (Orbax "
      "checkpoint + metadata.json). Nothing is downloaded."
    ),
    epilog="Formats: .pth/.pt/.pth.tar (torch), .safetensors, .h5 (Keras). Nothing is downloaded.",
  )
  p.add_argument("--arch", required=True, help="backbone name (e.g. resnet101, vgg16_deeplab)")
  p.add_argument("--src", required=True, type=pathlib.Path, help="the weights file")
  p.add_argument("--out", required=True, type=pathlib.Path, help="output directory")
  p.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="backbone attribute override, repeatable (e.g. num_classes=0, bn=frozen, depths=(1,1,1,1))",
  )
  p.add_argument(
    "--preprocessing",
    choices=("imagenet", "caffe_bgr"),
    help="input normalisation the weights expect, recorded in the metadata (default: the arch's)",
  )
  p.add_argument(
    "--allow-unused",
    action="append",
    default=[],
    metavar="PREFIX",
    help="source keys starting with PREFIX may stay unused (repeatable)",
  )
  p.add_argument("--overwrite", action="store_true", help="replace an existing conversion in --out")
  p.set_defaults(func=run)
  return p


def run(args: argparse.Namespace) -> int:
  """Handler: 0 on success, 2 on a usage error, 1 when the weights file is unusable (message on stderr)."""
  prog = "semdepth convert-weights"
  try:
    attributes = parse_set(args.set)
    meta = convert(
      args.arch,
      args.src,
      args.out,
      attributes=attributes,
      preprocessing=args.preprocessing,
      allow_unused=args.allow_unused,
      overwrite=args.overwrite,
    )
  except WeightsFileError as e:
    print(f"{prog}: error: {e}", file=sys.stderr)
    return 1
  except (KeyError, ValueError) as e:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return 2
  print(
    f"wrote {args.out} ({meta['architecture']}, collections {', '.join(meta['collections'])}; "
    f"source sha256 {meta['source']['sha256'][:12]}...)"
  )
  return 0
