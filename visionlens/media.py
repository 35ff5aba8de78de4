"""File access through fsspec, so every reader works the same on local paths and ``gs://`` URIs."""

from __future__ import annotations

import os
import posixpath
import sys
from collections.abc import Iterable, Sequence

import fsspec
import numpy as np
from fsspec.core import url_to_fs

from .errors import IngestError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _name_the_gcs_extra() -> None:
    """gcsfs is the ``[gcs]`` extra: fsspec resolves every ``gs://`` path in one registry, so its "not installed"
    message, set here once, is what every reader, the thumbnail route and the embedder say."""
    from fsspec.registry import known_implementations

    for protocol in ("gs", "gcs"):
        if protocol in known_implementations:
            known_implementations[protocol] = {
                **known_implementations[protocol],
                "err": "gs:// paths need gcsfs: pip install 'visionlens[gcs]'",
            }


_name_the_gcs_extra()

_GCS_PROTOCOLS = ("gs", "gcs")
# What ``configure_gcs`` put into fsspec's per-protocol defaults, so a later call can take exactly that back out.
_emulator_options: dict[str, str] = {}


def gcs_emulator_endpoint() -> str | None:
    """The URL of the GCS emulator named by ``STORAGE_EMULATOR_HOST`` (gcsfs's and Google's own variable), or None
    for real GCS. A bare ``host:port`` gets ``http://``, as gcsfs and the Google clients read it."""
    host = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
    if host in ("", "default"):
        return None
    return host if host.startswith(("http://", "https://")) else f"http://{host}"


def configure_gcs() -> str | None:
    """Point every ``gs://`` read in this process at the emulator named by ``STORAGE_EMULATOR_HOST``, or, when it is
    not set, leave gcsfs on real GCS with its default credentials. Returns the emulator endpoint (or None).

    Runs at import, so an app or CLI started with the variable set reads the emulator; a test that sets the variable
    later calls it again (and once more after unsetting it, to undo). The options go into fsspec's per-protocol
    config, so they reach every ``fsspec.open`` in the process (readers, the thumbnail cache, the embedder), not just
    this module. Against an emulator gcsfs needs:

    - ``token="anon"``: otherwise it tries Google's default credentials first, and on a machine that has some it
      would send them (and may probe the metadata server) to a local test server;
    - the plain ``gcsfs.core.GCSFileSystem``: with ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT`` true (gcsfs's default, read
      once when gcsfs is imported) ``gcsfs.GCSFileSystem`` is an experimental class that asks each bucket's type over
      gRPC, which the emulator does not speak: every first touch of a bucket then waits 60 s before falling back
      (measured: 55 s for one write, 52 s for one listing). The variable is set (if unset) before fsspec's lazy
      import of gcsfs, and the class is named explicitly in case gcsfs was imported before.
    """
    from fsspec.config import conf

    endpoint = gcs_emulator_endpoint()
    wanted = {"endpoint_url": endpoint, "token": "anon"} if endpoint else {}
    if wanted == _emulator_options:
        return endpoint
    for protocol in _GCS_PROTOCOLS:
        options = conf.setdefault(protocol, {})
        for key, value in _emulator_options.items():
            if options.get(key) == value:
                del options[key]
        options.update(wanted)
        if not options:
            del conf[protocol]
    _emulator_options.clear()
    _emulator_options.update(wanted)
    if endpoint:
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        _use_plain_gcsfs()
    return endpoint


def _use_plain_gcsfs() -> None:
    """Make ``gs://`` resolve to ``gcsfs.core.GCSFileSystem`` (see ``configure_gcs``), still importing gcsfs lazily
    when it has not been imported yet, so the light install without the ``[gcs]`` extra is unaffected. It stays
    registered after the emulator is gone: it reads real GCS the same way, with the same credentials."""
    from fsspec.registry import known_implementations

    for protocol in _GCS_PROTOCOLS:
        if protocol in known_implementations:
            known_implementations[protocol] = {**known_implementations[protocol], "class": "gcsfs.core.GCSFileSystem"}
    if "gcsfs.core" in sys.modules:
        plain = sys.modules["gcsfs.core"].GCSFileSystem
        for protocol in _GCS_PROTOCOLS:
            fsspec.register_implementation(protocol, plain, clobber=True)


configure_gcs()


def fs_path(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Split a URI into its filesystem and the path that filesystem understands."""
    return url_to_fs(str(uri))


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def join(root: str, *parts: str) -> str:
    """Join with ``/`` whatever the filesystem, keeping the protocol of ``root``."""
    root = str(root).rstrip("/")
    rel = posixpath.join(*parts) if parts else ""
    return f"{root}/{rel}" if rel else root


def safe_relpath(name: str, file: str, location: str) -> str:
    """Normalise a file name from an annotation file; refuse names that leave the image root.

    A dataset is served to everyone who opens the app, so ``../../etc/passwd`` in a COCO ``file_name`` must never
    become a readable path.
    """
    if not isinstance(name, str) or not name.strip():
        raise IngestError(f"empty or non-text file name {name!r}", file, location)
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or "://" in cleaned or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise IngestError(f"file name {name!r} is absolute; it must be relative to the image root", file, location)
    norm = posixpath.normpath(cleaned)
    if norm == ".." or norm.startswith("../"):
        raise IngestError(f"file name {name!r} escapes the image root", file, location)
    return norm


def read_bytes(uri: str) -> bytes:
    with fsspec.open(str(uri), "rb") as f:
        return f.read()


def decode_utf8(data: bytes, file: str) -> str:
    """Decode strictly: a latin-1 label file silently read as garbage labels is worse than an error."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise IngestError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save the file as UTF-8",
            file,
            f"line {line}",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(uri: str) -> str:
    try:
        return decode_utf8(read_bytes(uri), str(uri))
    except FileNotFoundError:
        raise IngestError("file not found", str(uri)) from None


def exists(uri: str) -> bool:
    fs, path = fs_path(uri)
    return fs.exists(path)


def isdir(uri: str) -> bool:
    fs, path = fs_path(uri)
    return fs.isdir(path)


def listdir(uri: str) -> list[str]:
    """Names (not paths) of the entries of a directory, sorted."""
    fs, path = fs_path(uri)
    if not fs.isdir(path):
        return []
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def find_files(root: str, extensions: Iterable[str] | None = None, outside_links: list[str] | None = None) -> list[str]:
    """All files under ``root`` as paths relative to it, listed in one recursive call (cheap on GCS).

    On a local disk, links to folders inside ``root`` are followed (a link back to a folder being listed is not, so
    link loops end), but links to folders outside it are not: listing ``/`` through ``images/x -> /`` would never
    end, and nothing there belongs to the dataset. Only regular files are listed: opening a FIFO named ``a.jpg``
    would block forever. Their paths go to ``outside_links`` when it is given, so a reader can say what it skipped.
    """
    exts = tuple(e.lower() for e in extensions) if extensions else None
    fs, path = fs_path(root)
    if not is_remote(root):
        return _walk_local(path, exts, outside_links)
    if not fs.isdir(path):
        return []
    base = path.rstrip("/") + "/"
    out = []
    for p in fs.find(path):
        rel = p[len(base) :] if p.startswith(base) else posixpath.relpath(p, path)
        if exts is None or rel.lower().endswith(exts):
            out.append(rel)
    return sorted(out)


def _walk_local(top: str, exts: tuple[str, ...] | None, outside_links: list[str] | None) -> list[str]:
    if not os.path.isdir(top):
        return []
    real_top = os.path.realpath(top)
    inside = real_top.rstrip(os.sep) + os.sep
    stack: list[tuple[str, str, str, frozenset[str]]] = [("", top, real_top, frozenset([real_top]))]
    out = []
    while stack:
        rel_dir, path, real_dir, ancestors = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            continue
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            try:
                is_dir = e.is_dir()  # follows links
            except OSError:
                is_dir = False
            if not is_dir:
                try:
                    regular = e.is_file()  # follows links; FIFOs and devices would block or never end a read
                except OSError:
                    regular = False
                if regular and (exts is None or rel.lower().endswith(exts)):
                    out.append(rel)
                continue
            link = e.is_symlink()
            real = os.path.realpath(e.path) if link else os.path.join(real_dir, e.name)
            if link and real != real_top and not real.startswith(inside):
                if outside_links is not None:
                    outside_links.append(rel)
                continue
            if real in ancestors:
                continue
            stack.append((rel, e.path, real, ancestors | {real}))
    return sorted(out)


def existing_mask(root: str, relpaths: list[str]) -> np.ndarray:
    """Which of ``relpaths`` exist under ``root``: one listing instead of one stat per image."""
    present = set(find_files(root))
    return np.fromiter((p in present for p in relpaths), dtype=bool, count=len(relpaths))


class UnreadableImageError(Exception):
    """An image whose header cannot be read: ``reason`` says why in words a user can act on."""

    def __init__(self, uri: str, reason: str):
        self.uri = str(uri)
        self.reason = reason
        super().__init__(f"{uri}: {reason}")


def image_size(uri: str) -> tuple[int, int]:
    """(width, height) from the image header only, after EXIF rotation, as annotation tools see the image.

    Raises ``UnreadableImageError`` for anything that stops Pillow reading the header: a missing or empty file,
    bytes that are no image, a header cut short, or a decompression bomb (Pillow refuses images above twice
    ``Image.MAX_IMAGE_PIXELS``). Pillow's plugins raise many exception types on bad bytes (OSError, SyntaxError,
    ValueError, struct.error, ...), so every one of them becomes this one error and the readers turn it into an
    issue on the sample instead of a traceback that would stop the whole ingest.
    """
    from PIL import Image

    try:
        with fsspec.open(str(uri), "rb") as f, Image.open(f) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:  # noqa: BLE001 - a broken EXIF block must not hide the size
                orientation = 1
    except FileNotFoundError:
        raise UnreadableImageError(uri, "file not found (or a link to nothing)") from None
    except Image.DecompressionBombError as e:
        raise UnreadableImageError(uri, f"refused as a possible decompression bomb: {e}") from None
    except Exception as e:  # noqa: BLE001 - see the docstring: any failure to read a header is one kind of problem
        raise UnreadableImageError(uri, _unreadable_reason(uri, e)) from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _unreadable_reason(uri: str, error: Exception) -> str:
    from PIL import UnidentifiedImageError

    try:
        fs, path = fs_path(uri)
        if fs.size(path) == 0:
            return "the file is empty (0 bytes)"
    except Exception:  # noqa: BLE001 - the size only sharpens the message
        pass
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can read (corrupt bytes or an unsupported format)"
    return f"the image header could not be read ({type(error).__name__}: {error}); the file may be truncated"


def pixel_limit() -> int | None:
    """Pillow's ``Image.MAX_IMAGE_PIXELS``: above it Pillow warns that decoding may be a decompression bomb."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def exceeds_pixel_limit(width: int, height: int) -> bool:
    limit = pixel_limit()
    return limit is not None and int(width) * int(height) > limit


def is_within(uri: str, root: str) -> bool:
    """Whether ``uri`` (after ``..`` and, on local disks, links are resolved) lies inside the folder ``root``.

    The one test for "inside the dataset folder": the app serves a dataset's files to everyone who opens it, so a
    path that leads out of the folder the user ingested must not be followed.
    """
    if is_remote(uri) or is_remote(root):
        u_proto, u_path = split_protocol(str(uri))
        r_proto, r_path = split_protocol(str(root))
        if u_proto != r_proto:
            return False
        u, r = posixpath.normpath("/" + (u_path or "")), posixpath.normpath("/" + (r_path or ""))
    else:
        u, r = os.path.realpath(fs_path(uri)[1]), os.path.realpath(fs_path(root)[1])
    return u == r or u.startswith(r.rstrip("/") + "/")


def normalize(uri: str) -> str:
    """``uri`` with ``..`` and (local) links resolved, so the same folder always reads the same."""
    if is_remote(uri):
        proto, path = split_protocol(str(uri))
        return f"{proto}://{posixpath.normpath('/' + (path or '')).lstrip('/')}"
    return os.path.realpath(fs_path(uri)[1])


def split_protocol(uri: str) -> tuple[str | None, str]:
    if "://" in uri:
        proto, path = uri.split("://", 1)
        return proto, path
    return None, uri


def links_outside(folder: str, relpaths: Sequence[str], root: str) -> dict[int, str]:
    """Indices of ``relpaths`` (relative to ``folder``) whose real location lies outside ``root``, with that location.

    A dataset unpacked from an archive can carry symbolic links (``images/a.jpg -> /home/me/.ssh/id_rsa``);
    following them would let anyone who opens the app read files outside the dataset folder. Object stores have
    no links, so remote folders answer empty. The cost is one directory scan per folder that holds the files and a
    ``realpath`` only for the entries that are links, not one per file.
    """
    if is_remote(folder) or is_remote(root):
        return {}
    base = fs_path(folder)[1]
    real_root = os.path.realpath(fs_path(root)[1]).rstrip("/")

    def inside(p: str) -> bool:
        return p == real_root or p.startswith(real_root + "/")

    by_dir: dict[str, list[int]] = {}
    for i, rel in enumerate(relpaths):
        by_dir.setdefault(posixpath.dirname(rel), []).append(i)
    out: dict[int, str] = {}
    for sub, idx in by_dir.items():
        dpath = os.path.join(base, sub) if sub else base
        real_dir = os.path.realpath(dpath)
        if not inside(real_dir):
            for i in idx:
                out[i] = os.path.join(real_dir, posixpath.basename(relpaths[i]))
            continue
        try:
            with os.scandir(dpath) as entries:
                links = {e.name for e in entries if e.is_symlink()}
        except OSError:  # no such folder: its files are reported missing elsewhere
            continue
        for i in idx:
            name = posixpath.basename(relpaths[i])
            if name in links:
                target = os.path.realpath(os.path.join(dpath, name))
                if not inside(target):
                    out[i] = target
    return out
