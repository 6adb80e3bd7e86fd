"""Where usage lands: the destination's checks and the atomic write to object storage.

The operator decides *what* to write; this module owns *where* and *how it is committed*: a destination is
checked before any request (:func:`resolve_target`), and a file is staged locally, verified (size, sha256,
the row count of a staged Parquet file) and committed whole (:func:`land`). Airflow's
``ObjectStoragePath`` and the fsspec backends load inside the functions: the operator module that imports
this one is parsed with every DAG file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_cfbilling.exceptions import CloudflareBillingError, CloudflareBillingInputError
from airflow_provider_cfbilling.utils.formats import FILE_FORMATS, format_for_name

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

# Object stores without a rename: one upload of the complete object is atomic there.
_SINGLE_PUT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oci", "oss"})
XCOM_OBJECTSTORAGE_BACKEND = "airflow.providers.common.io.xcom.backend.XComObjectStorageBackend"
# What to install for the common object-storage schemes, for the error when none serves a destination.
_PROVIDER_OF_SCHEME = {
    "s3": "apache-airflow-providers-amazon[s3fs] (or this package's [s3] extra)",
    "s3a": "apache-airflow-providers-amazon[s3fs] (or this package's [s3] extra)",
    "gs": "apache-airflow-providers-google",
    "gcs": "apache-airflow-providers-google",
    "abfs": "apache-airflow-providers-microsoft-azure",
    "abfss": "apache-airflow-providers-microsoft-azure",
    "az": "apache-airflow-providers-microsoft-azure",
    "adl": "apache-airflow-providers-microsoft-azure",
}

#: Writes the file's bytes to an open binary file and returns the number of rows it wrote.
Writer = Callable[[IO[bytes]], int]


@dataclass(frozen=True)
class Target:
    """A validated destination: URI (placeholders not yet filled), its connection, the file format."""

    uri: str
    conn_id: str | None
    file_format: str


# -- the destination, checked before any request ---------------------------------------------------


def resolve_target(destination: Any, destination_conn_id: str | None, file_format: str | None) -> Target | None:
    """The validated destination (URI with placeholders, connection, format), or None for XCom.

    :param destination: the operator's ``destination``: None, a URI string or an ``ObjectStoragePath``
    :param destination_conn_id: the operator's ``destination_conn_id``
    :param file_format: the operator's ``file_format``
    :raises CloudflareBillingInputError: saying what is wrong with the destination and what to pass
    """
    from airflow.sdk import ObjectStoragePath

    if destination is None:
        if file_format is not None:
            raise CloudflareBillingInputError(
                f"file_format={file_format!r} only applies to a destination; without one the "
                "records are returned as XCom. Set destination=... or drop file_format."
            )
        return None
    if isinstance(destination, ObjectStoragePath):
        uri, conn_id = clean_uri(destination), destination_conn_id or conn_id_of(destination)
        _check_filesystem(destination, uri)
    elif isinstance(destination, str) and destination.strip():
        uri = destination.strip()
        if uri.endswith("/"):
            raise CloudflareBillingInputError(
                f"destination={uri!r} ends with '/': it names a folder, not the object to write (did part of a "
                "template render to nothing?). End it with a file name, e.g. '.../usage.parquet'."
            )
        probe = _storage_path(uri)
        # Judged on the text: some Airflow versions make a relative local path absolute on parsing.
        if "://" not in uri and not uri.startswith("/"):
            raise CloudflareBillingInputError(
                f"destination={uri!r} is a relative local path: it would land wherever the worker runs. "
                "Use an absolute URI such as 'file:///data/cloudflare/usage.jsonl'."
            )
        if probe.protocol in ("", "file", "local") and os.path.isdir(probe.path):
            raise _is_a_directory(uri)
        _check_filesystem(probe, uri)
        conn_id = destination_conn_id or conn_id_of(probe)
    else:
        raise CloudflareBillingInputError(
            f"destination={destination!r} is not a location (did a template render to nothing?). Pass "
            "a URI such as 's3://bucket/cloudflare/usage.parquet' or 'file:///data/usage.jsonl', an "
            "ObjectStoragePath, or None to return the records as XCom."
        )
    return Target(uri, conn_id, _file_format(uri, file_format))


def _file_format(uri: str, file_format: str | None) -> str:
    implied = format_for_name(uri.rsplit("/", 1)[-1])
    if file_format is None:
        return implied or "jsonl"
    chosen = str(file_format).strip().lower()
    if chosen not in FILE_FORMATS:
        raise CloudflareBillingInputError(
            f"file_format={file_format!r} is not supported: use one of {', '.join(FILE_FORMATS)}."
        )
    if implied is not None and implied != chosen:
        raise CloudflareBillingInputError(
            f"file_format={chosen!r} contradicts the destination's suffix ({uri!r} looks like "
            f"{implied}). Fix the suffix or the file_format."
        )
    return chosen


def _storage_path(uri: str) -> ObjectStoragePath:
    """``ObjectStoragePath(uri)``, with an unknown scheme reported as the input error it is."""
    from airflow.sdk import ObjectStoragePath

    try:
        return ObjectStoragePath(uri)
    except ValueError as exc:
        raise CloudflareBillingInputError(
            f"destination={uri!r} cannot be opened: {exc}. Use a scheme whose filesystem is installed "
            "(file://, s3:// with apache-airflow-providers-amazon[s3fs], gs:// with apache-airflow-providers-google, "
            "abfs:// with apache-airflow-providers-microsoft-azure, ...)."
        ) from None


def _check_filesystem(path: ObjectStoragePath, uri: str) -> None:
    """Refuse, before any request, a destination whose scheme no installed provider serves."""
    from airflow.sdk.io import has_fs

    scheme = path.protocol or "file"
    if scheme in ("file", "local") or has_fs(scheme):
        return
    try:
        path.fs  # noqa: B018 (a filesystem attached by the DAG author with airflow.sdk.io.attach)
        return
    except ValueError:
        pass
    package = _PROVIDER_OF_SCHEME.get(scheme)
    install = f"install {package}" if package else "install the Airflow provider that serves it"
    raise CloudflareBillingInputError(
        f"destination={uri!r} uses the scheme '{scheme}', for which no filesystem is installed on this worker: "
        f"{install}, or write elsewhere. Nothing was fetched."
    )


def _is_a_directory(uri: str) -> CloudflareBillingInputError:
    # ``uri`` never ends with '/': a destination that does is refused first, and clean_uri drops it from a path.
    return CloudflareBillingInputError(
        f"destination={uri!r} is a directory: the destination must name the file to write, e.g. '{uri}/usage.jsonl'."
    )


def conn_id_of(path: ObjectStoragePath) -> str | None:
    """The connection id a path carries (``s3://conn@bucket/key`` or ``conn_id=``): an attribute since Airflow
    3.2, a storage option on 3.1."""
    conn_id = getattr(path, "conn_id", None) or path.storage_options.get("conn_id")
    return str(conn_id) if conn_id else None


def clean_uri(path: ObjectStoragePath) -> str:
    """The path's URI without the connection id Airflow embeds in ``str(path)``."""
    protocol = path.protocol or "file"
    if protocol in ("file", "local"):
        return f"file://{path.path}"
    return f"{protocol}://{path.path}"


def xcom_backend_offloads() -> bool:
    """Whether common-io's object-storage XCom backend is set up to move large values out of the DB."""
    from airflow.configuration import conf

    return (
        conf.get("core", "xcom_backend", fallback="") == XCOM_OBJECTSTORAGE_BACKEND
        and bool(conf.get("common.io", "xcom_objectstorage_path", fallback=""))
        and conf.getint("common.io", "xcom_objectstorage_threshold", fallback=-1) >= 0
    )


# -- writing, atomically ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviousObject:
    """The object a destination held before a landing: its size and sha256, and what the caller read from it.

    ``summary`` is what :func:`land`'s ``summarise`` returned for it (None when the bytes were the same, so not
    read, or without ``summarise``).
    """

    size: int
    sha256: str
    summary: Any = None


@dataclass(frozen=True)
class Landing:
    """What :func:`land` did: the file's size and sha256, whether it was written, and the object it replaced.

    ``previous`` is None when the destination held no object; ``written`` is False only when it held these
    very bytes (same sha256), which were then left as they were.
    """

    size: int
    sha256: str
    written: bool
    previous: PreviousObject | None
    inspected: Any = None

    @property
    def unchanged(self) -> bool:
        """The destination already held these bytes: nothing was written."""
        return not self.written


def land(
    write: Writer,
    path: ObjectStoragePath,
    file_format: str,
    *,
    compare: bool = True,
    summarise: Callable[[str], Any] | None = None,
    inspect: Callable[[str], Any] | None = None,
) -> Landing:
    """Write a file to ``path`` atomically, unless the destination already holds the same bytes.

    The file is written aside and verified first (size, sha256, a Parquet file's row count). With
    ``compare``, the object already at ``path`` (if any) is read in 1 MiB chunks to hash it: the same sha256
    leaves it untouched (no write, its modification time and version stay); another one is a replacement.
    Then the file is committed whole: ``os.replace`` of a temporary sibling on a local disk; one upload of
    the complete object to an object store (where a PUT is atomic); elsewhere an upload to a temporary
    sibling and a rename. On any failure (the writer's own checks, ``summarise`` or ``inspect`` included)
    the staged file is removed and the previous object is untouched.

    :param write: writes the file's bytes to the open staged file and returns the rows it wrote
    :param path: the destination
    :param file_format: the format written, for the staged file's own checks (a Parquet file's row count)
    :param compare: compare with the object already at ``path``; False always writes
    :param summarise: called, before the commit, with a local path holding the bytes of the object about to be
        replaced (the object itself on a local disk, else a downloaded copy); its result is the
        ``previous.summary``
    :param inspect: called with the local path of the staged file, written or not; its result is
        ``Landing.inspected``
    """
    from fsspec.implementations.local import LocalFileSystem

    fs = path.fs
    if isinstance(fs, LocalFileSystem):
        target = path.path
        if os.path.isdir(target):
            raise _is_a_directory(clean_uri(path))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        staged = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.tmp-{uuid.uuid4().hex}")
        try:
            size, digest = _stage(write, staged, file_format)
            inspected = None if inspect is None else inspect(staged)
            previous = None
            if compare and os.path.isfile(target):
                with open(target, "rb") as handle:
                    previous = PreviousObject(*_hashed(handle))
                if previous.sha256 == digest:
                    return Landing(size, digest, False, previous, inspected)
                if summarise is not None:
                    previous = PreviousObject(previous.size, previous.sha256, summarise(target))
            os.replace(staged, target)
        finally:
            if os.path.exists(staged):
                os.remove(staged)
        return Landing(size, digest, True, previous, inspected)

    with tempfile.TemporaryDirectory(prefix="cfbilling-") as workdir:
        local = os.path.join(workdir, "staged")
        size, digest = _stage(write, local, file_format)
        inspected = None if inspect is None else inspect(local)
        previous = None
        if compare:
            fs.invalidate_cache(path.path)  # a listing cached earlier must not hide an object written since
            if fs.isfile(path.path):
                with fs.open(path.path, "rb") as handle:
                    previous = PreviousObject(*_hashed(handle))
                if previous.sha256 == digest:
                    return Landing(size, digest, False, previous, inspected)
                if summarise is not None:
                    # Read from a local copy: the formats' readers seek (Parquet's footer) and stream from disk.
                    copy = os.path.join(workdir, "previous")
                    fs.get_file(path.path, copy)
                    previous = PreviousObject(previous.size, previous.sha256, summarise(copy))
        if path.protocol in _SINGLE_PUT_PROTOCOLS:
            fs.put_file(local, path.path)
        else:
            aside = f"{path.parent.path}/.{path.name}.tmp-{uuid.uuid4().hex}"
            try:
                fs.put_file(local, aside)
                fs.mv(aside, path.path)
            finally:
                if fs.exists(aside):
                    fs.rm(aside)
        fs.invalidate_cache(path.path)
        landed = fs.size(path.path)
        if landed != size:
            raise CloudflareBillingError(
                f"{clean_uri(path)} holds {landed} bytes after the upload, not the {size} written: the "
                "object store changed it or another writer raced this one. Re-run the task."
            )
    return Landing(size, digest, True, previous, inspected)


def _hashed(handle: IO[bytes]) -> tuple[int, str]:
    """(size, sha256 hex) of what ``handle`` reads, in 1 MiB chunks: never the whole object in memory."""
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _stage(write: Writer, local_path: str, file_format: str) -> tuple[int, str]:
    """Write the file to a local path, flush it to disk, and return (size, sha256) as read back."""
    with open(local_path, "wb") as handle:
        rows = write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    with open(local_path, "rb") as handle:
        size, digest = _hashed(handle)
    if file_format == "parquet":
        _verify_parquet(local_path, rows)
    return size, digest


def _verify_parquet(local_path: str, rows: int) -> None:
    import pyarrow.parquet as pq

    found = pq.read_metadata(local_path).num_rows
    if found != rows:
        raise CloudflareBillingError(f"The staged Parquet file holds {found} rows, not {rows}; not committed.")
