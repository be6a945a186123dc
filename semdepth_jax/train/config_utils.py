"""Loading, validating and saving ml_collections training configs.

A config is addressed as ``PATH[:ARGS]`` (``configs/ssegdepnet.py:model=cnn3d_up,size=tiny``): the file's
``get_config(ARGS)`` builds it, ``--config.key=value`` flags override single fields (parsed by
``ml_collections.config_flags`` against the field's type, on a private absl ``FlagValues`` per call so it
works inside the argparse ``semdepth train`` sub-command), and the result is validated against the schema of
``semdepth_jax.train.schema.base_config()`` and locked. Unknown override keys, unknown preset arguments and keys that
no part of the trainer reads are errors (conventions.md, "Configs").
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_dict, config_flags


class ConfigError(ValueError):
  """A config file, preset argument or override is invalid (the message names it)."""


# ----------------------------------------------------------------------------------------------------------
# preset arguments ("key=value,key=value")


def parse_preset_args(arg: str | None, defaults: Mapping[str, Any], where: str = "config") -> dict:
  """Parses ``'k=v,k=v'`` preset arguments, typed like ``defaults``.

  Values are converted to the type of the default (int, float, bool, str; ``None`` defaults take the
  string). Booleans accept true/false/1/0/yes/no.

  Args:
    arg: the part after ``:`` in ``--config path:arg`` (None or '' = all defaults).
    defaults: allowed keys and their default values.
    where: named in errors (the config file).

  Returns:
    A dict with every key of ``defaults``.

  Raises:
    ConfigError: an unknown key (the message lists the allowed ones), a malformed item or a value that does
      not convert.
  """
  out = dict(defaults)
  if not arg:
    return out
  for item in str(arg).split(","):
    item = item.strip()
    if not item:
      continue
    if "=" not in item:
      raise ConfigError(f"{where}: preset argument {item!r} is not key=value")
    key, value = (s.strip() for s in item.split("=", 1))
    if key not in defaults:
      raise ConfigError(
        f"{where}: unknown preset argument {key!r}; allowed: {', '.join(sorted(defaults))}"
      )
    out[key] = _convert(value, defaults[key], f"{where}: preset argument {key}")
  return out


def _convert(value: str, default: Any, where: str) -> Any:
  if isinstance(default, bool):
    low = value.lower()
    if low in ("1", "true", "yes", "y", "on"):
      return True
    if low in ("0", "false", "no", "n", "off"):
      return False
    raise ConfigError(f"{where}: expected a boolean, got {value!r}")
  if isinstance(default, int | float) and not isinstance(default, bool):
    try:
      return type(default)(value)
    except ValueError:
      raise ConfigError(f"{where}: expected {type(default).__name__}, got {value!r}") from None
  return value


# ----------------------------------------------------------------------------------------------------------
# schema validation


FREE_FORM_KEYS = ("model", "loss", "augment")
"""Sub-dicts whose keys are checked by their consumers (model constructor, losses, transforms)."""


def _is_dict(x: Any) -> bool:
  return isinstance(x, ml_collections.ConfigDict | Mapping)


def _items(x: Any):
  return x.items() if isinstance(x, Mapping) else x.items(preserve_field_references=False)


def check_against_schema(
  config: Any,
  schema: Any,
  *,
  path: str = "config",
  free_form: Sequence[str] = FREE_FORM_KEYS,
  stage_template: Any = None,
) -> None:
  """Checks that every key of ``config`` exists in ``schema`` (recursively) with a compatible type.

  Sub-dicts named in ``free_form`` are skipped (their consumers validate them). ``stages.<name>`` entries
  are each checked against ``stage_template`` (when given).

  Raises:
    ConfigError: the first unknown key or type mismatch, with its dotted path.
  """
  unknown = []
  for key, value in _items(config):
    sub = f"{path}.{key}"
    if key in free_form:
      continue
    if not _has(schema, key):
      unknown.append(sub)
      continue
    ref = schema[key]
    if key == "evals":  # entries checked against schema.eval_entry() by validate_config
      if not _is_dict(value):
        raise ConfigError(f"{sub} must be a dict of named evaluations, got {type(value).__name__}")
      continue
    if key == "stages" and stage_template is not None:
      if not _is_dict(value):
        raise ConfigError(f"{sub} must be a dict of stages, got {type(value).__name__}")
      for name, stage in _items(value):
        if not _is_dict(stage):
          raise ConfigError(f"{sub}.{name} must be a dict (a stage), got {type(stage).__name__}")
        check_against_schema(stage, stage_template, path=f"{sub}.{name}", free_form=free_form)
      continue
    if _is_dict(ref):
      if not _is_dict(value):
        raise ConfigError(f"{sub} must be a dict, got {type(value).__name__}")
      check_against_schema(value, ref, path=sub, free_form=free_form)
  if unknown:
    raise ConfigError(
      f"unknown config key(s) {', '.join(unknown)}; no part of the trainer reads them "
      "(see semdepth_jax/train/schema.py for the schema)"
    )


def _has(d: Any, key: str) -> bool:
  try:
    return key in d
  except TypeError:
    return False


def lock(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Locks ``config`` (no new keys), including ConfigDicts nested in tuples/lists; returns it."""
  config.lock()
  for _, value in _items(config):
    if isinstance(value, ml_collections.ConfigDict):
      lock(value)
    elif isinstance(value, list | tuple):
      for v in value:
        if isinstance(v, ml_collections.ConfigDict):
          lock(v)
  return config


# ----------------------------------------------------------------------------------------------------------
# loading


def ensure_configs_importable(config_path: str | os.PathLike | None = None) -> None:
  """Makes the repository's ``configs`` package importable (config files import ``configs.common``).

  An installed distribution ships ``configs``; in a source checkout whose editable install predates the
  folder, the folder's parent (the config file's grandparent, or the repository root next to
  ``semdepth_jax``) is put on ``sys.path``.
  """
  import importlib.util
  import sys

  if importlib.util.find_spec("configs") is not None:
    return
  candidates = []
  if config_path is not None:
    folder = os.path.dirname(os.path.abspath(config_path))
    if os.path.basename(folder) == "configs":
      candidates.append(os.path.dirname(folder))
  import semdepth_jax

  candidates.append(os.path.dirname(os.path.dirname(os.path.abspath(semdepth_jax.__file__))))
  for root in candidates:
    if os.path.isfile(os.path.join(root, "configs", "__init__.py")):
      sys.path.insert(0, root)
      return


def _split_spec(spec: str) -> tuple[str, str | None]:
  """Splits ``path[:args]`` (a ':' inside a Windows drive letter is not expected)."""
  if ":" in spec:
    path, arg = spec.split(":", 1)
    return path, arg
  return spec, None


def _load_module(path: str):
  import importlib.util

  name = "semdepth_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise ConfigError(f"cannot import config file {path!r}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path!r} has no get_config(arg) function")
  return module


def _check_override_key(config: Any, dotted: str) -> None:
  node, walked = config, "config"
  for part in dotted.split("."):
    key = part.split("[")[0]
    if not _is_dict(node) or not _has(node, key):
      known = ", ".join(sorted(node.keys())) if _is_dict(node) else "(not a dict)"
      raise ConfigError(
        f"unknown config key {walked}.{key} in --config.{dotted}; {walked} has: {known}"
      )
    node, walked = node[key], f"{walked}.{key}"
    for idx in re.findall(r"\[(\d+)\]", part):
      node = node[int(idx)]


def load_config(
  spec: str,
  overrides: Sequence[str] = (),
  *,
  validate: bool = True,
) -> ml_collections.ConfigDict:
  """Loads ``PATH[:ARGS]`` and applies ``--config.key=value`` overrides.

  Args:
    spec: config file path with optional preset arguments, e.g. ``configs/ssegdepnet.py:size=tiny``.
    overrides: strings ``--config.a.b=value`` (or ``config.a.b=value``); values are parsed against the
      type of the existing field by ``ml_collections.config_flags`` (tuples as ``'(1, 2)'``).
    validate: check the result against ``semdepth_jax.train.schema`` (:func:`validate_config`).

  Returns:
    The locked ``ConfigDict``.

  Raises:
    FileNotFoundError: the config file does not exist.
    ConfigError: bad preset argument, unknown override key, unparseable value, schema violation.
  """
  path, arg = _split_spec(spec)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} not found (from --config {spec})")
  norm = []
  for o in overrides:
    o = o if o.startswith("--") else "--" + o
    if not o.startswith("--config.") or "=" not in o:
      raise ConfigError(f"override {o!r} must have the form --config.key=value")
    norm.append(o)
  ensure_configs_importable(path)
  module = _load_module(path)
  config = module.get_config(arg) if arg else module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{path}: get_config must return an ml_collections.ConfigDict")
  lock(config)
  for o in norm:
    _check_override_key(config, o[len("--config.") :].split("=", 1)[0])
  argv = ["semdepth", *norm]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_dict("config", config, flag_values=fv, sys_argv=argv)
  try:
    fv(argv)
  except flags.Error as e:
    raise ConfigError(f"bad override value: {e}") from None
  except (KeyError, AttributeError, TypeError, ValueError) as e:
    raise ConfigError(f"bad override in {' '.join(norm)}: {e}") from None
  config = fv.config
  if validate:
    validate_config(config)
  return lock(config)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks a training config: schema (no unknown keys), stage order and per-stage lengths.

  Raises:
    ConfigError: with the offending dotted key.
  """
  from semdepth_jax.train import schema

  check_against_schema(config, schema.base_config(), stage_template=schema.stage_config())
  for name in config.get("evals") or {}:
    check_against_schema(
      config.evals[name], schema.eval_entry(split=""), path=f"config.evals.{name}"
    )
  if not config.model.get("name"):
    raise ConfigError("config.model.name is empty; a config file must choose a registered model")
  if config.image_size is None or len(tuple(config.image_size)) != 2:
    raise ConfigError(f"config.image_size must be (H, W), got {config.image_size!r}")
  order = tuple(config.stage_order)
  names = set(config.stages.keys())
  if not order:
    raise ConfigError("config.stage_order is empty; at least one stage is needed")
  if len(set(order)) != len(order):
    raise ConfigError(f"config.stage_order has duplicates: {order}")
  if set(order) != names:
    raise ConfigError(
      f"config.stage_order {order} must list every stage of config.stages ({sorted(names)}) once"
    )
  for name in order:
    st = config.stages[name]
    if st.num_steps < 0 or (st.num_epochs or 0) < 0:
      raise ConfigError(f"config.stages.{name}: num_steps/num_epochs must be >= 0")
    if st.num_steps and st.num_epochs:
      raise ConfigError(f"config.stages.{name}: give num_steps or num_epochs, not both")
    if st.batch_size < 1:
      raise ConfigError(f"config.stages.{name}.batch_size must be >= 1, got {st.batch_size}")
  if config.compute_dtype not in ("float32", "bfloat16"):
    raise ConfigError(
      f"config.compute_dtype must be float32 or bfloat16, got {config.compute_dtype!r}"
    )
  # semdepth_jax.train.step.CPU_CONV_IMPLS
  if config.get("cpu_conv", "ynn") not in ("ynn", "eigen"):
    raise ConfigError(f"config.cpu_conv must be ynn or eigen, got {config.cpu_conv!r}")
  if config.get("pointwise_conv", "conv") not in ("conv", "dot"):
    raise ConfigError(f"config.pointwise_conv must be conv or dot, got {config.pointwise_conv!r}")
  if config.get("volume_conv", "conv") not in ("conv", "planes"):
    raise ConfigError(f"config.volume_conv must be conv or planes, got {config.volume_conv!r}")
  check_values(config)


def _int(value: Any, key: str, minimum: int, meaning: str = "") -> int:
  """``value`` as an int >= ``minimum``; else a ConfigError naming ``key``, the expected and the actual."""
  if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
    raise ConfigError(f"{key} must be an integer >= {minimum}{meaning}, got {value!r}")
  if value < minimum:
    raise ConfigError(f"{key} must be >= {minimum}{meaning}, got {value!r}")
  return int(value)


def _number(value: Any, key: str, minimum: float = 0.0) -> float:
  """``value`` as a finite float >= ``minimum``; else a ConfigError naming ``key``."""
  if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
    raise ConfigError(f"{key} must be a finite number >= {minimum}, got {value!r}")
  if value < minimum:
    raise ConfigError(f"{key} must be >= {minimum}, got {value!r}")
  return float(value)


def _size(value: Any, key: str) -> tuple[int, int]:
  """An (H, W) pair of positive ints; else a ConfigError naming ``key``."""
  try:
    pair = tuple(value)
  except TypeError:
    pair = ()
  if len(pair) != 2 or not all(
    isinstance(v, int | float) and not isinstance(v, bool) and int(v) == v and v >= 1 for v in pair
  ):
    raise ConfigError(f"{key} must be (H, W) with H, W integers >= 1 (pixels), got {value!r}")
  return int(pair[0]), int(pair[1])


def check_values(config: Any) -> None:
  """Checks the range of every value the trainer reads, so a bad one fails before step 0.

  Covers stage lengths and batch sizes, optimiser counts, ``image_size`` / ``eval.image_size`` (positive
  pixel sizes), ``checkpoint``, ``eval`` and ``evals`` counts, the data loader settings, ``num_classes``
  (>= 1; checked against the dataset by :func:`check_model_input`) and ``mesh_shape``
  against the devices of this process (skipped for multi-process runs, whose devices are only known after
  ``jax.distributed.initialize``).

  Raises:
    ConfigError: one line with the dotted key, the expected and the actual value.
  """
  _size(config.image_size, "config.image_size")
  _int(config.seed, "config.seed", -(2**63))
  for name in config.stage_order:
    st, key = config.stages[name], f"config.stages.{name}"
    _int(st.num_steps, f"{key}.num_steps", 0, " (0 = use num_epochs)")
    _number(st.num_epochs, f"{key}.num_epochs")
    _int(st.batch_size, f"{key}.batch_size", 1)
    _int(st.recalibrate_bn_batches, f"{key}.recalibrate_bn_batches", 0, " (0 = off)")
    _int(st.optimizer.grad_accum_steps, f"{key}.optimizer.grad_accum_steps", 1)
    _number(st.optimizer.learning_rate, f"{key}.optimizer.learning_rate")
    _number(st.optimizer.grad_clip_norm, f"{key}.optimizer.grad_clip_norm")
    _number(st.optimizer.weight_decay, f"{key}.optimizer.weight_decay")
    _int(st.schedule.warmup_steps, f"{key}.schedule.warmup_steps", 0)
  ckpt = config.checkpoint
  _int(ckpt.keep, "config.checkpoint.keep", 1, " (checkpoints kept)")
  _int(ckpt.every_steps, "config.checkpoint.every_steps", 0, " (0 = only at stage ends)")
  _int(config.log_every_steps, "config.log_every_steps", 0)
  ev = config.eval
  _int(ev.every_steps, "config.eval.every_steps", 0, " (0 = only at stage ends and the end)")
  _int(ev.batch_size, "config.eval.batch_size", 1)
  _int(ev.max_batches, "config.eval.max_batches", 0, " (0 = the whole split)")
  _int(ev.image_summaries, "config.eval.image_summaries", 0)
  if ev.image_size is not None:
    _size(ev.image_size, "config.eval.image_size")
  for name in config.get("evals") or {}:
    entry, key = config.evals[name], f"config.evals.{name}"
    if not entry.split:
      raise ConfigError(f"{key}.split must name a split, got {entry.split!r}")
    _int(entry.every_steps, f"{key}.every_steps", 0, " (0 = with the main evaluation)")
    _int(entry.batch_size, f"{key}.batch_size", 0, " (0 = config.eval.batch_size)")
    _int(entry.max_batches, f"{key}.max_batches", 0, " (0 = the whole split)")
  _int(config.data.num_threads, "config.data.num_threads", 0, " (0 = synchronously)")
  _int(config.data.prefetch, "config.data.prefetch", 0)
  _int(config.data.worker_count, "config.data.worker_count", 0)
  if config.num_classes is not None:
    _int(config.num_classes, "config.num_classes", 1, " (None = the dataset's count)")
  _check_mesh(config)


def check_model_input(config: Any) -> None:
  """Checks the model against its data: class count and input size (abstractly: no parameters built).

  ``config.num_classes`` must equal the dataset's count (``semdepth_jax.data.meta``): a different count
  would silently ignore label ids >= it or leave classes never seen, and no class mapping exists to
  translate them. (Not part of :func:`validate_config`: test harnesses pair a nominal dataset name with
  their own data and class count.) Then it traces ``model.init`` with ``jax.eval_shape``
  (``semdepth_jax.train.loop.abstract_variables``) per stage, so a size the model cannot take (not
  divisible by its total stride, too small for its pooling) fails before the dataset is opened and before
  any parameter exists. Costs one trace per stage model; run by ``semdepth train`` after
  :func:`validate_config`.

  Raises:
    ConfigError: naming ``config.num_classes`` or ``config.image_size``, the expected and the actual.
  """
  from semdepth_jax.train import loop

  _check_num_classes(config)
  size = _size(config.image_size, "config.image_size")
  for name in config.stage_order:
    kwargs = loop.model_kwargs(config, config.stages[name])
    try:
      loop.abstract_variables(config, loop.build_model(config, config.stages[name]))
    except (ValueError, TypeError) as e:
      raise ConfigError(
        f"config.image_size {size}: model {kwargs['name']!r} (stage {name}) cannot take it: {e}"
      ) from None


def _check_num_classes(config: Any) -> None:
  from semdepth_jax.data import meta as meta_lib

  if config.num_classes is None:
    return
  n = _int(config.num_classes, "config.num_classes", 1, " (None = the dataset's count)")
  try:
    meta = meta_lib.get_meta(config.dataset)
  except KeyError:  # a dataset without meta info: num_classes is the only source.
    return
  if n != meta.num_classes:
    raise ConfigError(
      f"config.num_classes is {n}, but dataset {config.dataset!r} has {meta.num_classes} classes "
      f"(label ids 0..{meta.num_classes - 1}); a different count would silently drop or invent classes "
      "and no class mapping is configured: remove config.num_classes (None = the dataset's count)"
    )


def _check_mesh(config: Any) -> None:
  shape = config.mesh_shape
  try:
    shape = tuple(int(s) for s in shape)
  except (TypeError, ValueError):
    raise ConfigError(f"config.mesh_shape must be (data, model) integers, got {shape!r}") from None
  if config.distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    return  # devices are known only after jax.distributed.initialize (train.mesh).
  import jax

  from semdepth_jax.train import mesh

  try:
    mesh.mesh_shape_for(shape, jax.device_count(), jax.process_count())
  except ValueError as e:
    raise ConfigError(f"config.mesh_shape: {e}") from None


# ----------------------------------------------------------------------------------------------------------
# JSON round trip (the workdir's config.json)


def to_dict(config: Any) -> Any:
  """Plain nested dict/list version of a ConfigDict (FieldReferences resolved)."""
  if isinstance(config, ml_collections.ConfigDict | config_dict.FrozenConfigDict):
    return {k: to_dict(v) for k, v in _items(config)}
  if isinstance(config, Mapping):
    return {k: to_dict(v) for k, v in config.items()}
  if isinstance(config, list | tuple):
    return [to_dict(v) for v in config]
  return config


def save_json(config: Any, path: str | os.PathLike) -> None:
  """Writes the config as indented JSON (keys sorted)."""
  with open(path, "w", encoding="utf-8") as f:
    json.dump(to_dict(config), f, indent=2, sort_keys=True)
    f.write("\n")


def load_json(path: str | os.PathLike) -> dict:
  """Reads a config JSON written by :func:`save_json` (plain dict)."""
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def diff(a: Any, b: Any, path: str = "config") -> list[str]:
  """Dotted keys whose values differ between two (plain-dict) configs; lists compared as values."""
  out = []
  if isinstance(a, Mapping) and isinstance(b, Mapping):
    for k in sorted(set(a) | set(b)):
      if k not in a or k not in b:
        out.append(f"{path}.{k}")
      else:
        out.extend(diff(a[k], b[k], f"{path}.{k}"))
  elif a != b:
    out.append(path)
  return out


def literal(value: str) -> Any:
  """``ast.literal_eval`` with the string itself as fallback (for hand-written override values)."""
  try:
    return ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return value
