"""Objects in the artifact store (the MLflow artifacts destination): a local folder or ``s3://bucket/prefix``.

Batch jobs keep their input, result chunks and error chunks here, under ``<root>/batches/<id>/``.
Everything streams: uploads go in parts (S3 multipart, 8 MB), downloads come back in blocks, so
no file is ever held in memory. Keys are ``/``-separated paths below the root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledgerline.errors import LedgerlineError
from ledgerline.settings import Settings

PART_BYTES = 8 * 1024 * 1024  # S3's multipart minimum is 5 MB
READ_BYTES = 1024 * 1024


class ArtifactStoreError(LedgerlineError):
    """An object is missing or the store cannot be reached."""


@dataclass(frozen=True)
class ArtifactStore:
    root: str  # a local folder, or s3://bucket/prefix
    endpoint_url: str | None = None

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def uri(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key.lstrip('/')}"

    def key_of(self, uri: str) -> str | None:
        """The key of ``uri`` when it is inside this store; None otherwise (or when it tries to climb out)."""
        root = self.root.rstrip("/") + "/"
        if self.is_s3:
            if not uri.startswith(root):
                return None
            key = uri[len(root):]
        else:
            raw = uri.removeprefix("file://")
            try:
                key = Path(raw).resolve().relative_to(Path(self.root).resolve()).as_posix()
            except ValueError:
                return None
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            return None
        return key

    # ---------------------------------------------------------------- S3 plumbing

    def _bucket_key(self, key: str) -> tuple[str, str]:
        bucket, _, prefix = self.root.removeprefix("s3://").partition("/")
        return bucket, f"{prefix.strip('/')}/{key}".lstrip("/")

    def _client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def _path(self, key: str) -> Path:
        return Path(self.root) / key

    # ---------------------------------------------------------------- writing

    def open_writer(self, key: str) -> ObjectWriter:
        """A writer whose bytes become the object ``key`` at :meth:`ObjectWriter.commit` (none on abort)."""
        return ObjectWriter(self, key)

    def put_stream(self, key: str, blocks: Iterable[bytes]) -> int:
        """Store the concatenated ``blocks`` under ``key`` (replacing it); returns the bytes written.

        Nothing is visible under ``key`` until every block arrived (a temporary file renamed into
        place; an S3 multipart upload completed at the end, aborted on an error).
        """
        w = self.open_writer(key)
        try:
            for block in blocks:
                w.write(block)
            w.commit()
        except BaseException:
            w.abort()
            raise
        return w.size

    def put_bytes(self, key: str, data: bytes) -> None:
        if self.is_s3:
            bucket, okey = self._bucket_key(key)
            self._client().put_object(Bucket=bucket, Key=okey, Body=data)
        else:
            self.put_stream(key, [data])

    def put_file(self, key: str, path: Path) -> None:
        if self.is_s3:
            bucket, okey = self._bucket_key(key)
            self._client().upload_file(str(path), bucket, okey)
        else:
            with path.open("rb") as f:
                self.put_stream(key, iter(lambda: f.read(READ_BYTES), b""))

    # ---------------------------------------------------------------- reading

    def exists(self, key: str) -> bool:
        if not self.is_s3:
            return self._path(key).is_file()
        from botocore.exceptions import ClientError

        bucket, okey = self._bucket_key(key)
        try:
            self._client().head_object(Bucket=bucket, Key=okey)
            return True
        except ClientError:
            return False

    def size(self, key: str) -> int:
        if not self.is_s3:
            return self._path(key).stat().st_size
        bucket, okey = self._bucket_key(key)
        return int(self._client().head_object(Bucket=bucket, Key=okey)["ContentLength"])

    def stream(self, key: str, block: int = READ_BYTES) -> Iterator[bytes]:
        """The object's bytes in blocks; ArtifactStoreError when it is missing."""
        if not self.is_s3:
            try:
                f = self._path(key).open("rb")
            except FileNotFoundError:
                raise ArtifactStoreError(f"{self.uri(key)} does not exist") from None
            with f:
                yield from iter(lambda: f.read(block), b"")
            return
        from botocore.exceptions import ClientError

        bucket, okey = self._bucket_key(key)
        try:
            body = self._client().get_object(Bucket=bucket, Key=okey)["Body"]
        except ClientError as exc:
            raise ArtifactStoreError(f"{self.uri(key)} cannot be read: {exc}") from None
        try:
            yield from body.iter_chunks(block)
        finally:
            body.close()

    def download(self, key: str, dst: Path) -> Path:
        """The object copied to ``dst`` (a local store's file is copied too, so the caller may delete it)."""
        if not self.is_s3:
            src = self._path(key)
            if not src.is_file():
                raise ArtifactStoreError(f"{self.uri(key)} does not exist")
            shutil.copyfile(src, dst)
            return dst
        from botocore.exceptions import ClientError

        bucket, okey = self._bucket_key(key)
        try:
            self._client().download_file(bucket, okey, str(dst))
        except ClientError as exc:
            raise ArtifactStoreError(f"{self.uri(key)} cannot be read: {exc}") from None
        return dst

    def local_path(self, key: str) -> Path | None:
        """The object's file when the store is a local folder (no copy needed), else None."""
        return None if self.is_s3 else self._path(key)


class ObjectWriter:
    """Bytes to one object, in parts: a temporary file renamed into place, or an S3 multipart upload."""

    def __init__(self, store: ArtifactStore, key: str) -> None:
        self.store = store
        self.key = key
        self.size = 0
        self._buf = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._client: Any = None
        self._upload: str | None = None
        self._file: Any = None
        self._tmp: str | None = None
        if store.is_s3:
            self._client = store._client()
            self._bucket, self._okey = store._bucket_key(key)
        else:
            dst = store._path(key)
            dst.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
            self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._buf += data
        while len(self._buf) >= PART_BYTES:
            self._send(bytes(self._buf[:PART_BYTES]))
            del self._buf[:PART_BYTES]

    def _send(self, data: bytes) -> None:
        if self._upload is None:
            self._upload = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._okey)["UploadId"]
        number = len(self._parts) + 1
        resp = self._client.upload_part(Bucket=self._bucket, Key=self._okey, UploadId=self._upload,
                                        PartNumber=number, Body=data)
        self._parts.append({"ETag": resp["ETag"], "PartNumber": number})

    def commit(self) -> None:
        if self._file is not None:
            self._file.close()
            assert self._tmp is not None
            os.replace(self._tmp, self.store._path(self.key))
            self._tmp = None
            return
        if self._upload is None:  # small: one PUT
            self._client.put_object(Bucket=self._bucket, Key=self._okey, Body=bytes(self._buf))
            return
        if self._buf:
            self._send(bytes(self._buf))
            self._buf.clear()
        self._client.complete_multipart_upload(Bucket=self._bucket, Key=self._okey, UploadId=self._upload,
                                               MultipartUpload={"Parts": self._parts})
        self._upload = None

    def abort(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                if self._tmp is not None:
                    Path(self._tmp).unlink(missing_ok=True)
                    self._tmp = None
            return
        if self._upload is not None:
            try:
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._okey, UploadId=self._upload)
            except Exception:  # noqa: BLE001 - already failing; the store expires abandoned uploads
                pass
            self._upload = None


def artifact_store(settings: Settings) -> ArtifactStore:
    return ArtifactStore(settings.resolved_artifacts_destination(), settings.s3_endpoint_url)
