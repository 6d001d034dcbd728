"""Object storage: S3 in production, a local directory on one machine.

Both stores take the same keys (``tenant/documents/abc.pdf``) and hand out
signed URLs, so large uploads and downloads never pass through a service's
memory or the bus. Local signed URLs are served by the gateway through
`object_routes`.

An upload URL is signed for one body: its exact size and content type are
part of the signature, and it stores one object, never replacing another.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import aioboto3
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError as BotoClientError

from wharf_common import errors

logger = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# What an upload's content type may be: printable, with single inner spaces.
# HTTP trims a header's outer spaces and S3's signature folds inner runs, so
# the header a client sends is the one that was signed.
CONTENT_TYPE_PATTERN = r"^[\x21-\x7e]+(?: [\x21-\x7e]+)*$"

_MAX_KEY_LENGTH = 1024
_KEY_PART = re.compile(r"[^./\\\x00-\x1f][^/\\\x00-\x1f]*")
_CONTENT_TYPE = re.compile(CONTENT_TYPE_PATTERN)
_META_DIR = ".meta"
_CHUNK = 256 * 1024
_INLINE_READ = 64 * 1024


def validate_key(key: str) -> str:
    """Return `key` when it is a safe relative object key; raise BadRequest otherwise.

    A key is one or more ``/``-separated parts; a part is never empty, never
    starts with a dot (so no ``.``, ``..`` or hidden names) and holds no
    backslash or control character. Both stores apply the same rule, so code
    that works against one works against the other.
    """
    if not key or len(key) > _MAX_KEY_LENGTH:
        raise errors.BadRequest("object key must be 1 to 1024 characters")
    if not all(_KEY_PART.fullmatch(part) for part in key.split("/")):
        raise errors.BadRequest(f"invalid object key {key!r}")
    return key


@dataclass(frozen=True)
class SignedUpload:
    """A URL that takes one PUT, and the headers that PUT must carry."""

    url: str
    headers: dict[str, str]


def _upload_headers(size: int, content_type: str) -> dict[str, str]:
    if size < 0:
        raise ValueError(f"an upload size cannot be negative, not {size}")
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"invalid content type {content_type!r}")
    # If-None-Match makes S3 refuse a second PUT; the local store refuses one anyway.
    return {"Content-Type": content_type, "If-None-Match": "*"}


class ObjectStore(abc.ABC):
    """Where large bodies, documents and carrier files live."""

    @abc.abstractmethod
    async def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Store `data` under `key`, replacing any previous object."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes:
        """Return the object's bytes; raise NotFound when there is none."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    @abc.abstractmethod
    async def exists(self, key: str) -> bool:
        """True when an object is stored under `key`."""

    @abc.abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix/``; return how many."""

    @abc.abstractmethod
    async def signed_url(self, key: str, *, expires_in: int = 3600) -> str:
        """Return a URL that lets anyone holding it GET `key` until it expires."""

    @abc.abstractmethod
    async def signed_upload(
        self, key: str, *, size: int, content_type: str, expires_in: int = 3600
    ) -> SignedUpload:
        """Return a URL for one PUT of exactly `size` bytes of `content_type` to `key`.

        A body of another size or type is refused, and so is any PUT once
        `key` holds an object. The PUT must send the returned headers.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the store is unusable afterwards."""


class LocalStore(ObjectStore):
    """Objects as files under a directory, with HMAC-signed URLs the gateway serves.

    Writes go to a temporary file in the target directory and are renamed into
    place, so a reader sees either the old object or the new one. The content
    type is kept beside the data, under ``<root>/.meta/``.
    """

    def __init__(self, root: Path, signing_key: bytes, public_url: str) -> None:
        if not signing_key:
            raise ValueError("LocalStore needs a non-empty signing key")
        self.root = root.resolve()
        self._signing_key = signing_key
        self._public_url = public_url.rstrip("/")

    def path(self, key: str) -> Path:
        """Return the file that holds `key`."""
        return self.root / validate_key(key)

    def _meta_path(self, key: str) -> Path:
        return self.root / _META_DIR / validate_key(key)

    async def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Store `data` under `key` atomically."""
        path, meta = self.path(key), self._meta_path(key)
        await asyncio.to_thread(_write_object, path, meta, data, content_type)

    async def get(self, key: str) -> bytes:
        """Return the object's bytes; raise NotFound when there is none."""
        path = self.path(key)
        try:
            data = _read_if_small(path)
            if data is None:
                data = await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise errors.NotFound(f"no object {key!r}") from None
        return data

    async def delete(self, key: str) -> None:
        """Remove the object and its metadata, if present."""
        path, meta = self.path(key), self._meta_path(key)
        await asyncio.to_thread(_unlink_quietly, path, meta)

    async def exists(self, key: str) -> bool:
        """True when a file is stored under `key`."""
        return await asyncio.to_thread(self.path(key).is_file)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove the directory of `prefix` and its metadata."""
        path, meta = self.path(prefix), self._meta_path(prefix)
        return await asyncio.to_thread(_remove_tree, path, meta)

    async def content_type(self, key: str) -> str:
        """Return the content type the object was stored with."""
        meta = self._meta_path(key)
        try:
            return (await asyncio.to_thread(meta.read_text)).strip() or DEFAULT_CONTENT_TYPE
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return DEFAULT_CONTENT_TYPE

    async def signed_url(self, key: str, *, expires_in: int = 3600) -> str:
        """Return ``{public_url}/v1/objects/{key}?method=GET&expires=..&signature=..``."""
        expires = int(time.time()) + expires_in
        signature = self._sign("GET", validate_key(key), expires)
        query = urlencode({"method": "GET", "expires": expires, "signature": signature})
        return f"{self._public_url}/v1/objects/{quote(key, safe='/')}?{query}"

    async def signed_upload(
        self, key: str, *, size: int, content_type: str, expires_in: int = 3600
    ) -> SignedUpload:
        """Return a PUT URL whose query carries the signed size and content type."""
        headers = _upload_headers(size, content_type)
        expires = int(time.time()) + expires_in
        signature = self._sign("PUT", validate_key(key), expires, size, content_type)
        query = urlencode(
            {
                "method": "PUT",
                "expires": expires,
                "size": size,
                "type": content_type,
                "signature": signature,
            }
        )
        url = f"{self._public_url}/v1/objects/{quote(key, safe='/')}?{query}"
        return SignedUpload(url, headers)

    def verify_signed(
        self, key: str, method: str, expires: int, signature: str, *signed: str | int
    ) -> None:
        """Raise Forbidden unless `signature` is valid and unexpired.

        It covers the method, key and expiry time, and for an upload also the
        `signed` size and content type.
        """
        expected = self._sign(method.upper(), key, expires, *signed)
        if not hmac.compare_digest(expected, signature):
            raise errors.Forbidden("invalid signature")
        if expires < time.time():
            raise errors.Forbidden("signed URL expired")

    async def close(self) -> None:
        """Nothing to release for a directory."""

    def _sign(self, method: str, key: str, expires: int, *signed: str | int) -> str:
        # Keys and content types hold no control character, so the lines cannot run together.
        message = "\n".join(str(part) for part in (method, key, expires, *signed)).encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    async def _put_upload(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str, size: int
    ) -> None:
        """Write an upload of exactly `size` bytes chunk by chunk, unless `key` holds an object.

        The body goes to a temporary file first, so an upload that is too
        long, too short or cut off leaves nothing behind under `key`.
        """
        path, meta = self.path(key), self._meta_path(key)
        tmp = await asyncio.to_thread(_open_temp, path)
        received = 0
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > size:
                    raise errors.PayloadTooLarge(f"this URL takes {size} bytes; the body is longer")
                await asyncio.to_thread(tmp.write, chunk)
            if received < size:
                raise errors.BadRequest(f"this URL takes {size} bytes; the body held {received}")
            await asyncio.to_thread(_commit_new, tmp, path, meta, content_type)
        except BaseException:
            await asyncio.to_thread(_discard_temp, tmp)
            raise


def _open_temp(path: Path) -> IO[bytes]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.NamedTemporaryFile(
            "wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        )
    except (FileExistsError, NotADirectoryError):
        raise errors.Conflict("a prefix of the key is already an object") from None


def _sync_close(tmp: IO[bytes]) -> None:
    tmp.flush()
    os.fsync(tmp.fileno())
    tmp.close()


def _write_meta(meta: Path, content_type: str) -> IO[bytes]:
    meta_tmp = _open_temp(meta)
    with meta_tmp:
        meta_tmp.write(content_type.encode())
    return meta_tmp


def _commit_temp(tmp: IO[bytes], path: Path, meta: Path, content_type: str) -> None:
    _sync_close(tmp)
    meta_tmp = _write_meta(meta, content_type)
    try:
        os.replace(meta_tmp.name, meta)
        os.replace(tmp.name, path)
    except IsADirectoryError:
        _discard_temp(meta_tmp)
        raise errors.Conflict("the key is a prefix of other objects") from None


def _commit_new(tmp: IO[bytes], path: Path, meta: Path, content_type: str) -> None:
    _sync_close(tmp)
    # A hard link never replaces a file, unlike a rename: of two uploads to
    # one key, only the first lands. Its content type follows a moment later;
    # until then the object reads as the default type.
    try:
        os.link(tmp.name, path)
    except FileExistsError:
        if path.is_dir():
            raise errors.Conflict("the key is a prefix of other objects") from None
        raise errors.Conflict("this upload URL has been used: the object is stored") from None
    os.unlink(tmp.name)
    os.replace(_write_meta(meta, content_type).name, meta)


def _discard_temp(tmp: IO[bytes]) -> None:
    tmp.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp.name)


def _read_if_small(path: Path) -> bytes | None:
    """The file's bytes if it holds at most `_INLINE_READ`, else None.

    Reading a small local file takes microseconds, far less than handing the
    read to a worker thread and back, so it happens on the event loop; larger
    files are left to a thread.
    """
    with path.open("rb") as file:
        if os.fstat(file.fileno()).st_size > _INLINE_READ:
            return None
        return file.read()


def _write_object(path: Path, meta: Path, data: bytes, content_type: str) -> None:
    tmp = _open_temp(path)
    try:
        tmp.write(data)
        _commit_temp(tmp, path, meta, content_type)
    except BaseException:
        _discard_temp(tmp)
        raise


def _remove_tree(path: Path, meta: Path) -> int:
    if not path.is_dir():
        return 0
    count = sum(1 for item in path.rglob("*") if item.is_file())
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(meta, ignore_errors=True)
    return count


def _unlink_quietly(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            path.unlink()


def _problem(error: errors.ClientError) -> web.Response:
    return web.json_response(
        error.to_problem(), status=error.status, content_type="application/problem+json"
    )


def _verify_download(store: LocalStore, request: web.Request) -> str:
    key = validate_key(request.match_info["key"])
    query = request.query
    if query.get("method", "").upper() != "GET":
        raise errors.Forbidden("the URL is not signed for this method")
    try:
        expires = int(query["expires"])
        signature = query["signature"]
    except (KeyError, ValueError):
        raise errors.Forbidden("missing or malformed signature") from None
    store.verify_signed(key, "GET", expires, signature)
    return key


def _verify_upload(store: LocalStore, request: web.Request) -> tuple[str, int, str]:
    key = validate_key(request.match_info["key"])
    query = request.query
    if query.get("method", "").upper() != "PUT":
        raise errors.Forbidden("the URL is not signed for this method")
    try:
        expires = int(query["expires"])
        size = int(query["size"])
        content_type = query["type"]
        signature = query["signature"]
    except (KeyError, ValueError):
        raise errors.Forbidden("missing or malformed signature") from None
    store.verify_signed(key, "PUT", expires, signature, size, content_type)
    return key, size, content_type


def _check_upload_headers(request: web.Request, size: int, content_type: str) -> None:
    sent = request.headers.get("Content-Type")
    if sent != content_type:
        raise errors.UnsupportedMediaType(
            f"this URL takes a body of type {content_type}, not {sent or 'one without a type'}"
        )
    length = request.content_length
    if length is not None and length > size:
        raise errors.PayloadTooLarge(f"this URL takes {size} bytes, not {length}")
    if length is not None and length < size:
        raise errors.BadRequest(f"this URL takes {size} bytes, not {length}")


def object_routes(store: LocalStore) -> list[web.RouteDef]:
    """Routes serving a LocalStore's signed URLs at ``/v1/objects/{key}`` (GET and PUT).

    A PUT answers 403 for a bad or expired signature, 409 once the object is
    stored, 415 for another Content-Type than signed, 413 for a longer body
    and 400 for a shorter one, each as problem+json.
    """

    async def download(request: web.Request) -> web.StreamResponse:
        try:
            key = _verify_download(store, request)
            if not await store.exists(key):
                raise errors.NotFound("no such object")
        except errors.ClientError as error:
            return _problem(error)
        content_type = await store.content_type(key)
        return web.FileResponse(store.path(key), headers={"Content-Type": content_type})

    async def upload(request: web.Request) -> web.Response:
        try:
            key, size, content_type = _verify_upload(store, request)
            # Checked before the body is read, so a spent URL costs no upload.
            if await store.exists(key):
                raise errors.Conflict("this upload URL has been used: the object is stored")
            _check_upload_headers(request, size, content_type)
            chunks = request.content.iter_chunked(_CHUNK)
            await store._put_upload(key, chunks, content_type, size)
        except errors.ClientError as error:
            return _problem(error)
        logger.debug("stored a signed upload of %d bytes", size)
        return web.Response(status=200)

    return [
        web.get("/v1/objects/{key:.+}", download),
        web.put("/v1/objects/{key:.+}", upload),
    ]


class S3Store(ObjectStore):
    """Objects in an S3 bucket (or any S3-compatible server) through aioboto3.

    One client is opened by `open` and kept until `close`. Credentials come
    from the standard AWS environment and configuration chain.
    """

    def __init__(
        self, bucket: str, *, endpoint_url: str | None = None, region: str | None = None
    ) -> None:
        self.bucket = bucket
        self._endpoint_url = endpoint_url
        self._region = region
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    async def open(self, *, create_bucket: bool = False) -> None:
        """Open the client; create the bucket first when asked and it is missing."""
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"} if self._endpoint_url else {},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
        session = aioboto3.Session()
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(
            session.client(
                "s3", endpoint_url=self._endpoint_url, region_name=self._region, config=config
            )
        )
        self._exit_stack = stack
        if create_bucket:
            await self._ensure_bucket()

    async def _ensure_bucket(self) -> None:
        if await self._bucket_exists():
            return
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self._region and self._region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            await self._s3.create_bucket(**params)
        except self._s3.exceptions.BucketAlreadyOwnedByYou:
            return
        logger.info("created bucket %s", self.bucket)

    async def _bucket_exists(self) -> bool:
        try:
            await self._s3.head_bucket(Bucket=self.bucket)
        except BotoClientError as error:
            if _status(error) == 404:
                return False
            raise
        return True

    @property
    def _s3(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3Store is not open")
        return self._client

    async def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Upload `data` under `key`."""
        await self._s3.put_object(
            Bucket=self.bucket, Key=validate_key(key), Body=data, ContentType=content_type
        )

    async def get(self, key: str) -> bytes:
        """Download the object; raise NotFound when there is none."""
        try:
            response = await self._s3.get_object(Bucket=self.bucket, Key=validate_key(key))
        except self._s3.exceptions.NoSuchKey:
            raise errors.NotFound(f"no object {key!r}") from None
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        await self._s3.delete_object(Bucket=self.bucket, Key=validate_key(key))

    async def exists(self, key: str) -> bool:
        """True when the bucket holds `key`."""
        try:
            await self._s3.head_object(Bucket=self.bucket, Key=validate_key(key))
        except BotoClientError as error:
            if _status(error) == 404:
                return False
            raise
        return True

    async def delete_prefix(self, prefix: str) -> int:
        """Delete the objects under ``prefix/``, a thousand per request."""
        paginator = self._s3.get_paginator("list_objects_v2")
        deleted = 0
        pages = paginator.paginate(Bucket=self.bucket, Prefix=validate_key(prefix) + "/")
        async for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                await self._s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                deleted += len(keys)
        return deleted

    async def signed_url(self, key: str, *, expires_in: int = 3600) -> str:
        """Return a presigned get_object URL."""
        url: str = await self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": validate_key(key)},
            ExpiresIn=expires_in,
        )
        return url

    async def signed_upload(
        self, key: str, *, size: int, content_type: str, expires_in: int = 3600
    ) -> SignedUpload:
        """Return a presigned put_object URL signing its length, type and If-None-Match.

        S3 checks the signed headers itself: a body of another length or type
        fails the signature (403), and with ``If-None-Match: *`` a PUT to a key
        that holds an object answers 412. Its answers are S3's XML errors, not
        problem+json. An S3-compatible server without conditional writes
        ignores If-None-Match, and there the URL can replace the object until
        it expires. A cut-off upload stores nothing: S3 writes an object whole.
        """
        headers = _upload_headers(size, content_type)
        params = {
            "Bucket": self.bucket,
            "Key": validate_key(key),
            "ContentLength": size,
            "ContentType": content_type,
            "IfNoneMatch": headers["If-None-Match"],
        }
        url: str = await self._s3.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in
        )
        return SignedUpload(url, headers)

    async def close(self) -> None:
        """Close the client."""
        stack, self._exit_stack, self._client = self._exit_stack, None, None
        if stack is not None:
            await stack.aclose()


def _status(error: Any) -> int | None:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _flag(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true", "yes", "on"}


async def open_store(url: str, *, signing_key: str, public_url: str) -> ObjectStore:
    """Open the store a storage URL names.

    ``file://relative/dir`` or ``file:///abs/dir`` gives a LocalStore (the
    directory is created); ``s3://bucket?endpoint_url=..&region=..`` gives an
    S3Store, which creates a missing bucket only with ``create_bucket=true``.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        root = Path(parts.netloc + parts.path)
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        return LocalStore(root, signing_key.encode(), public_url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError("an s3:// storage URL needs a bucket name")
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        store = S3Store(
            parts.netloc, endpoint_url=query.get("endpoint_url"), region=query.get("region")
        )
        await store.open(create_bucket=_flag(query.get("create_bucket")))
        return store
    raise ValueError(f"unsupported storage URL scheme {parts.scheme!r}")
