"""The team's shared cache: the artifact store and Prefect's cache records in one S3 bucket.

SEGEN_STORE_URL=s3://BUCKET/PREFIX (team.env sets it; the endpoint is $AWS_ENDPOINT_URL,
the keys the usual AWS_* variables) makes every clone, worker and machine that sets it
share cache hits: a stage published in one is a hit in all of them, whatever folder they
run in. Layout under PREFIX:

    artifacts/<stage>/<key>/<upload>/<file>   one upload of a published key folder
    artifacts/<stage>/<key>.json              its commit marker: {upload, files: {path: size}}
    prefect/records/<key>                     Prefect's cache record of the stage task
    prefect/results/<key>                     its result (the pickled StageResult)

The local store stays the working copy (stage bodies read local files): a key missing here
but present in the bucket is downloaded into a staging folder and published by a rename, so
it is complete or absent, as a local result is. An S3 object is written whole or not at
all, and the marker goes after every file of its upload, so a key with a marker is
complete: an upload a killed uploader left half sent has none and is a miss (the next
publisher sends it again), and two machines that publish one key at once each send their
own files and the marker that lands last names one whole set (the other set is left as
garbage under the key). Every call goes through segen.retry: a store that stops answering
fails with a message naming it, not a traceback.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segen.retry import Server, call_with_retries

log = logging.getLogger("segen.store")
URL_VARIABLE = "SEGEN_STORE_URL"
_TRANSIENT_CODES = {"500", "502", "503", "504", "RequestTimeout", "SlowDown",
                    "InternalError", "ServiceUnavailable"}


class SharedStoreError(ValueError):
    """The shared store is misconfigured (no such bucket, refused keys): nothing a retry
    mends; the message names the bucket and the fix."""


def shared_store() -> "SharedStore | None":
    """The store $SEGEN_STORE_URL names, or None (the local store alone)."""
    url = os.environ.get(URL_VARIABLE, "").strip()
    return _store(url, os.environ.get("AWS_ENDPOINT_URL") or None) if url else None


@functools.lru_cache(maxsize=8)
def _store(url: str, endpoint: str | None) -> "SharedStore":
    """One per URL and endpoint: its S3 client (thread-safe) is made once per process."""
    return SharedStore.parse(url, endpoint)


@dataclass(frozen=True)
class SharedStore:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty
    endpoint: str | None = None

    @classmethod
    def parse(cls, url: str, endpoint: str | None = None) -> "SharedStore":
        if not url.startswith("s3://") or not url[5:].split("/")[0]:
            raise SharedStoreError(f"{URL_VARIABLE}={url!r}: expected s3://BUCKET[/PREFIX] "
                                   "(team.env of `segen team up` sets it), or unset it to "
                                   "keep the cache in this project alone")
        bucket, _, prefix = url[5:].partition("/")
        return cls(bucket, prefix.strip("/"), endpoint)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    # -- the artifact store's key folders -------------------------------------------------
    def _marker(self, stage: str, key: str) -> str:
        return self._key("artifacts", stage, key + ".json")

    def has(self, stage: str, key: str) -> bool:
        """Whether the bucket holds the key's commit marker (so a complete file set)."""
        return self._read_marker(stage, key) is not None

    def _read_marker(self, stage: str, key: str) -> dict[str, Any] | None:
        """The key's commit marker, or None when there is none or it is not one segen wrote
        (not JSON, or a path that leaves the key folder): a miss, which the next publisher
        of the key overwrites."""
        name = self._marker(stage, key)
        body = self._get(name)
        if body is None:
            return None
        try:
            marker = json.loads(body)
            files = {str(path): int(size) for path, size in marker["files"].items()}
            upload = str(marker["upload"])
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            log.warning("%s/%s is not a commit marker (%s): treated as not stored", self.url,
                        name, type(err).__name__)
            return None
        unsafe = [p for p in files if p.startswith("/") or ".." in p.split("/")]
        if unsafe or not upload.startswith(f"artifacts/{stage}/{key}/"):
            log.warning("%s/%s names paths outside its key folder (%s): treated as not "
                        "stored", self.url, name, (unsafe or [upload])[0][:100])
            return None
        return {"upload": upload, "files": files}

    def _get(self, name: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        from botocore.exceptions import ClientError

        def get() -> bytes | None:
            try:
                return self._client.get_object(Bucket=self.bucket, Key=name)["Body"].read()
            except ClientError as err:
                if _code(err) in {"404", "NoSuchKey", "NotFound"}:
                    return None
                raise

        return self._call(get)

    def fetch(self, stage: str, key: str, dest: Path) -> bool:
        """Download the key folder into dest (an empty staging folder); False when the
        bucket has no complete one."""
        marker = self._read_marker(stage, key)
        if marker is None:
            return False
        for relative, size in marker["files"].items():
            name, target = self._key(marker["upload"], relative), dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            self._call(lambda: self._client.download_file(self.bucket, name, str(target)))
            if target.stat().st_size != size:  # a download cut short must not be published
                raise OSError(f"{self.url}/{name}: downloaded {target.stat().st_size} of "
                              f"{size} bytes")
        log.info("stage %s: key %s fetched from the shared store %s", stage, key[:12],
                 self.url)
        return True

    def upload(self, stage: str, key: str, folder: Path) -> None:
        """Send a published key folder under a prefix of its own, then its commit marker; a
        key already committed is kept."""
        if self.has(stage, key):
            return
        upload = f"artifacts/{stage}/{key}/{uuid.uuid4().hex}"  # under the prefix
        files = {p.relative_to(folder).as_posix(): p.stat().st_size
                 for p in sorted(folder.rglob("*")) if p.is_file()}
        for relative in files:
            self._call(lambda: self._client.upload_file(
                str(folder / relative), self.bucket, self._key(upload, relative)))
        marker = json.dumps({"upload": upload, "files": files}).encode()
        self._call(lambda: self._client.put_object(Bucket=self.bucket,
                                                   Key=self._marker(stage, key), Body=marker))

    def discard(self, stage: str, key: str) -> None:
        """Remove a key that no longer holds: its marker first, so that from the first call
        on no reader takes what is left for complete, then every upload of it."""
        self._call(lambda: self._client.delete_object(Bucket=self.bucket,
                                                      Key=self._marker(stage, key)))
        for name in self._call(lambda: self._list(self._key("artifacts", stage, key) + "/")):
            self._call(lambda: self._client.delete_object(Bucket=self.bucket, Key=name))

    def _list(self, prefix: str) -> dict[str, int]:
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                        Prefix=prefix)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    # -- Prefect's cache records --------------------------------------------------------
    def prefect_storage(self, kind: str) -> Any:
        """A Prefect filesystem block on prefect/<kind> (records or results), through
        fsspec's s3fs (which dvc[s3] installs)."""
        from prefect.filesystems import RemoteFileSystem

        client = {"endpoint_url": self.endpoint} if self.endpoint else {}
        return RemoteFileSystem(basepath=f"s3://{self.bucket}/{self._key('prefect', kind)}",
                                settings={"client_kwargs": client})

    def has_record(self, key: str) -> bool:
        return self._get(self._key("prefect", "records", key)) is not None

    def remove_record(self, key: str) -> None:
        """Drop Prefect's record and result of key (its artifact is gone, or unreadable)."""
        for kind in ("records", "results"):
            self._call(lambda: self._client.delete_object(
                Bucket=self.bucket, Key=self._key("prefect", kind, key)))

    # -- calls ----------------------------------------------------------------------------
    @functools.cached_property
    def _client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint)

    def _call(self, call: Any) -> Any:
        server = Server("shared artifact store (S3)", f"{self.url} at "
                        f"{self.endpoint or 'AWS'}",
                        "start it (`segen team up` runs one on loopback), point "
                        f"AWS_ENDPOINT_URL at yours, or unset {URL_VARIABLE} to cache in "
                        "this project alone")
        try:
            return call_with_retries(call, server, _transient)
        except Exception as err:
            if _code(err) in {"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId",
                              "SignatureDoesNotMatch"}:
                raise SharedStoreError(
                    f"the shared artifact store {self.url} refused the request ({_code(err)}):"
                    f" create bucket {self.bucket!r} or fix {URL_VARIABLE} and the AWS_* "
                    "keys (team.env of `segen team up` has both)") from None
            raise


def _code(err: Exception) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _transient(err: Exception) -> bool:
    """A connection that failed or a server error: the store's fault, worth a retry."""
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(err, (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError,
                        ReadTimeoutError)):
        return True
    return _code(err) in _TRANSIENT_CODES
