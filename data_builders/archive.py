"""Read-only access to one builder input given as a zip archive or as the folder it extracts to.

The official archives are large (Cityscapes ``leftImg8bit_trainvaltest.zip`` 11 GB, SUN RGB-D
``SUNRGBD.zip`` several GB), so a zip is read in place: the central directory is indexed once and
each member is read when the example that needs it is built; nothing is extracted to disk. Members
are handed out as :class:`Member` objects that behave like the paths the builders already use
(``open('rb')``, ``exists()``, ``name``, ``str()``), so ``data_builders.common.read_png`` and
``common.check_files_exist`` work on both kinds of input and every error names
``<archive>:<member>``.

Used by the ``cityscapes`` and ``sun_rgbd`` builders. (A candidate for ``data_builders/common.py``
once other builders need it.)
"""

from __future__ import annotations

import fnmatch
import io
import zipfile
import zlib

from etils import epath


class Member:
  """One file inside a zip archive, usable where a builder expects an ``epath.Path``.

  Attributes:
    source: the archive it belongs to.
    relative: the file's name relative to the tree (``leftImg8bit/train/...``), which may differ
      from the member name by a leading wrapper folder.
  """

  def __init__(self, source: ZipOrFolder, relative: str):
    self.source = source
    self.relative = relative

  @property
  def member(self) -> str:
    """The member's name inside the archive (the relative name if it does not exist)."""
    return self.source.members().get(self.relative, self.relative)

  @property
  def name(self) -> str:
    """File name without folders (like ``Path.name``)."""
    return self.relative.rsplit("/", 1)[-1]

  @property
  def stem(self) -> str:
    """File name without its last suffix (like ``Path.stem``)."""
    name = self.name
    return name.rsplit(".", 1)[0] if "." in name[1:] else name

  def exists(self) -> bool:
    """Whether the archive holds the member."""
    return self.relative in self.source.members()

  def read_bytes(self) -> bytes:
    """The member's content.

    Raises:
      ValueError: the member is missing or cannot be read (truncated archive, bad CRC); the message
        names the member.
    """
    try:
      return self.source.zip_file().read(self.member)
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error, KeyError) as e:
      # zlib.error: a damaged deflate stream (not an OSError).
      raise ValueError(f"{self}: cannot read archive member: {type(e).__name__}: {e}") from e

  def read_text(self, encoding: str = "utf-8") -> str:
    """The member's content decoded as text (raises like ``read_bytes``)."""
    return self.read_bytes().decode(encoding)

  def open(self, mode: str = "rb") -> io.BytesIO:
    """An in-memory file of the member's bytes (only ``'rb'`` is supported)."""
    if mode != "rb":
      raise ValueError(f"{self}: archive members are read-only, got mode {mode!r}")
    return io.BytesIO(self.read_bytes())

  def __str__(self) -> str:
    return f"{self.source.path}:{self.member}"

  __repr__ = __str__


class ZipOrFolder:
  """One input tree: the files below ``path`` (a folder) or the members of ``path`` (a zip archive).

  Names are relative, ``/``-separated paths such as ``leftImg8bit/train/aachen/x.png``. For an
  archive the part of each member name before ``top`` is stripped, so an archive that wraps the tree
  in an extra folder (``cityscapes/leftImg8bit/...``) reads the same as the official one
  (``leftImg8bit/...``).

  Args:
    path: the folder that holds ``top`` or the zip archive.
    top: first folder of every relevant name (``leftImg8bit``, ``SUNRGBD``, ...).
  """

  def __init__(self, path: epath.Path, top: str):
    self.path = epath.Path(path)
    self.top = top
    self.is_archive = self.path.is_file()
    self._zip: zipfile.ZipFile | None = None
    self._members: dict[str, str] | None = None

  def __repr__(self) -> str:
    return f"ZipOrFolder({str(self.path)!r}, top={self.top!r})"

  def zip_file(self) -> zipfile.ZipFile:
    """The open archive (opened on first use)."""
    if self._zip is None:
      try:
        self._zip = zipfile.ZipFile(self.path)
      except (OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"{self.path}: cannot open as a zip archive: {e}") from e
    return self._zip

  def members(self) -> dict[str, str]:
    """Relative name -> member name of every file of the archive under ``top`` (indexed once)."""
    if self._members is None:
      marker = self.top + "/"
      out = {}
      for info in self.zip_file().infolist():
        if info.is_dir():
          continue
        name = info.filename.replace("\\", "/")
        if not name.startswith(marker):
          at = name.find("/" + marker)
          if at < 0:
            continue
          name = name[at + 1 :]
        out.setdefault(name, info.filename)
      self._members = out
    return self._members

  def file(self, name: str) -> epath.Path | Member:
    """The file ``name`` (it may not exist: check with ``.exists()``)."""
    if not self.is_archive:
      return self.path.joinpath(*name.split("/"))
    return Member(self, name)

  def glob(self, pattern: str) -> list[str]:
    """Sorted relative names matching ``pattern`` (``fnmatch`` per ``/``-separated part)."""
    parts = pattern.split("/")
    if self.is_archive:
      names = self.members()
    else:
      names = [str(p.relative_to(self.path)).replace("\\", "/") for p in self.path.glob(pattern)]
    return sorted(
      n
      for n in names
      if len(n.split("/")) == len(parts)
      and all(fnmatch.fnmatchcase(a, b) for a, b in zip(n.split("/"), parts, strict=True))
    )

  def has_top(self) -> bool:
    """Whether the tree holds anything under ``top``."""
    if self.is_archive:
      return bool(self.members())
    return (self.path / self.top).is_dir()

  def close(self) -> None:
    """Closes the archive (reopened on next use)."""
    if self._zip is not None:
      self._zip.close()
      self._zip = None

  def where(self) -> str:
    """How the input is described in messages: the archive, or the folder ``path/top``."""
    return str(self.path) if self.is_archive else str(self.path / self.top)


def find_input(manual_dir: epath.Path, folder: str, archive: str) -> ZipOrFolder | None:
  """Finds one input in ``manual_dir``: the extracted ``folder`` or the zip ``archive``.

  Looks for ``manual_dir/folder/``, then ``manual_dir/archive``, then both one level below
  ``manual_dir`` (e.g. ``manual_dir/cityscapes/leftImg8bit/``). The extracted folder wins when both
  are present.

  Returns:
    The input, or None when neither is found.
  """
  levels = [manual_dir]
  if manual_dir.is_dir():
    levels += sorted(p for p in manual_dir.iterdir() if p.is_dir() and p.name != folder)
  for level in levels:
    if (level / folder).is_dir():
      return ZipOrFolder(level, folder)
    if (level / archive).is_file():
      return ZipOrFolder(level / archive, folder)
  return None


def check_present(paths, where: str, instructions: str = "", max_listed: int = 20) -> None:
  """Raises one FileNotFoundError naming the missing paths (checked before a build starts).

  Like ``data_builders.common.check_files_exist`` (same message), but lists at most ``max_listed``
  paths and counts the rest, since a missing folder of a 10 000-image dataset would otherwise fill
  the screen.

  Args:
    paths: required files (``epath.Path`` or :class:`Member`).
    where: the input(s) that were searched, named in the message.
    instructions: appended to the message (typically MANUAL_DOWNLOAD_INSTRUCTIONS).
    max_listed: how many missing paths are named.
  """
  missing = [str(p) for p in paths if not p.exists()]
  if missing:
    listing = "\n  ".join(missing[:max_listed])
    more = f"\n  ... and {len(missing) - max_listed} more" if len(missing) > max_listed else ""
    message = f"{len(missing)} required file(s) missing under {where}:\n  {listing}{more}"
    raise FileNotFoundError(f"{message}\n{instructions}".rstrip())
