"""S3 object store via boto3: versioned, encrypted bucket, previews on a lifecycle rule, presigned GETs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from core.errors import PressroomError

log = logging.getLogger(__name__)

PREVIEW_RULE_ID = "pressroom-expire-previews"
"""Lifecycle rule id that `ensure_bucket` owns; other rules in the bucket are left as they are."""

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NotFound", "404"})
_TRANSIENT_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling", "ThrottlingException",
    "RequestLimitExceeded", "TooManyRequestsException",
})
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys per call


class StorageUnavailable(PressroomError):
    """The object store did not answer (connection failure, timeout or 5xx after retries); try again later."""

    code = "storage_unavailable"


def make_client(*, endpoint_url: str | None = None, region: str = "us-east-1", access_key: str | None = None,
                secret_key: str | None = None, max_attempts: int = 5) -> Any:
    """A SigV4, path-style S3 client that retries throttling, 5xx and connection errors with backoff.

    `max_attempts` has botocore's meaning: retries after the first try (5 → up to 6 requests). Credentials
    fall back to boto3's usual chain (environment, profile, instance role) when not given.
    """
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                    retries={"max_attempts": max_attempts, "mode": "standard"},
                    connect_timeout=5, read_timeout=60)
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, config=config)


class S3Store:
    """The `core.ports.ObjectStore` on an S3 bucket: AWS, or any S3 API (moto, MinIO) via `endpoint_url`.

    Keys are used as given. Version ids are S3's. Call `ensure_bucket()` once at deploy or boot: it needs the
    rights to create and configure the bucket, which the steady-state role may not have.
    """

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, region: str = "us-east-1",
                 access_key: str | None = None, secret_key: str | None = None, sse: str | None = "AES256",
                 preview_prefix: str = "previews/", preview_expiry_days: int = 30,
                 client: Any = None) -> None:
        self.bucket = bucket
        self.region = region
        self.sse = sse
        self.preview_prefix = preview_prefix
        self.preview_expiry_days = preview_expiry_days
        self.list_page_size = 1000  # entries per ListObjectVersions page (S3's most); small in tests of paging
        self.client = client or make_client(endpoint_url=endpoint_url, region=region, access_key=access_key,
                                            secret_key=secret_key)

    def ensure_bucket(self) -> None:
        """Create the bucket if missing and turn on versioning, default encryption and the preview lifecycle.

        Idempotent: safe to run at every boot. Lifecycle rules other than `PREVIEW_RULE_ID` are kept.

        Raises:
            StorageUnavailable: the endpoint did not answer.
        """
        with self._translated(self.bucket):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as error:
                if _code(error) not in _MISSING_CODES | {"NoSuchBucket"}:
                    raise
                self._create_bucket()
            self.client.put_bucket_versioning(Bucket=self.bucket,
                                              VersioningConfiguration={"Status": "Enabled"})
            if self.sse:
                self.client.put_bucket_encryption(Bucket=self.bucket, ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": self.sse}}]})
            self._put_preview_rule()

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Store `data` as the newest version of `key` (encrypted at rest); returns S3's version id.

        Raises:
            StorageUnavailable: the endpoint did not answer after retries.
        """
        extra = {"ServerSideEncryption": self.sse} if self.sse else {}
        with self._translated(key):
            response = self.client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                              ContentType=content_type, **extra)
        return response.get("VersionId") or "null"  # "null" is S3's id when versioning is off

    def get(self, key: str, *, version: str | None = None) -> bytes:
        """The newest (or the given) version's bytes.

        Raises:
            KeyError: no such key, or no such version of it.
            StorageUnavailable: the endpoint did not answer, or the body stream broke off.
        """
        extra = {"VersionId": version} if version else {}
        with self._translated(key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key, **extra)
            except ClientError as error:
                if version and _code(error) == "InvalidArgument":  # AWS's answer to a malformed version id
                    raise KeyError(key) from error
                raise
            with response["Body"] as body:
                return body.read()

    def exists(self, key: str) -> bool:
        """True while the key has a current version (a delete marker on top counts as absent)."""
        try:
            with self._translated(key):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except KeyError:
            return False
        return True

    def versions(self, key: str) -> list[str]:
        """Every version id of `key`, oldest first (S3 lists newest first); delete markers don't count."""
        return [entry["VersionId"] for entry in reversed(list(self._listed(key, "Versions")))]

    def url(self, key: str, *, expires_s: int = 900, version: str | None = None) -> str:
        """A presigned SigV4 GET URL valid for `expires_s` seconds; signed offline, the key is not checked."""
        params = {"Bucket": self.bucket, "Key": key} | ({"VersionId": version} if version else {})
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)

    def delete_all_versions(self, key: str) -> int:
        """Erase every version and delete marker of exactly `key`; returns how many data versions went.

        A put that races with the erasure may survive it; the caller re-runs erasure if that matters.

        Raises:
            StorageUnavailable: the endpoint did not answer, or S3 refused to delete some versions.
        """
        data_versions = list(self._listed(key, "Versions"))
        targets = [{"Key": key, "VersionId": entry["VersionId"]}
                   for entry in data_versions + list(self._listed(key, "DeleteMarkers"))]
        self._delete_versions(targets, key)
        log.info("erased %s version(s) of %s", len(data_versions), key)
        return len(data_versions)

    def delete_prefix(self, prefix: str) -> int:
        """Erase every version and delete marker of every key under the folder `prefix` (ending in "/");
        returns how many data versions went. A put racing with it may survive: run it again if that matters.

        Raises:
            ValueError: `prefix` is empty or does not end in "/".
            StorageUnavailable: the endpoint did not answer, or S3 refused to delete some versions.
        """
        if not prefix.endswith("/") or not prefix.strip("/"):
            raise ValueError(f"prefix {prefix!r} must name a folder: non-empty and ending in '/'")
        data, targets = 0, []
        paginator = self.client.get_paginator("list_object_versions")
        with self._translated(prefix):  # listed whole before deleting, so no page is shifted under the listing
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix,
                                           PaginationConfig={"PageSize": self.list_page_size}):
                versions = page.get("Versions", [])
                data += len(versions)
                targets += [{"Key": e["Key"], "VersionId": e["VersionId"]}
                            for e in versions + page.get("DeleteMarkers", [])]
        self._delete_versions(targets, prefix)
        log.info("erased %s version(s) under %s", data, prefix)
        return data

    def _delete_versions(self, targets: list[dict[str, str]], what: str) -> None:
        for start in range(0, len(targets), _DELETE_BATCH):
            with self._translated(what):
                batch = targets[start:start + _DELETE_BATCH]
                response = self.client.delete_objects(Bucket=self.bucket,
                                                      Delete={"Objects": batch, "Quiet": True})
            if response.get("Errors"):
                errors = response["Errors"]
                first = f"{errors[0].get('Code')}: {errors[0].get('Message')}"
                raise StorageUnavailable(f"S3 kept {len(errors)} version(s) of {what!r} ({first}); "
                                         "run the erasure again.")

    def _listed(self, key: str, kind: str) -> Iterator[dict[str, Any]]:
        """Entries of `kind` ("Versions" or "DeleteMarkers") of exactly `key`, in S3's order: newest first."""
        paginator = self.client.get_paginator("list_object_versions")
        with self._translated(key):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                yield from (entry for entry in page.get(kind, []) if entry["Key"] == key)

    def _create_bucket(self) -> None:
        location = {} if self.region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": self.region}}
        try:
            self.client.create_bucket(Bucket=self.bucket, **location)
            log.info("created bucket %s", self.bucket)
        except ClientError as error:
            if _code(error) != "BucketAlreadyOwnedByYou":
                raise

    def _put_preview_rule(self) -> None:
        try:
            rules = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
        except ClientError as error:
            if _code(error) != "NoSuchLifecycleConfiguration":
                raise
            rules = []
        ours = {
            "ID": PREVIEW_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": self.preview_prefix},
            "Expiration": {"Days": self.preview_expiry_days},
            # On a versioned bucket expiry only stacks a delete marker; this frees the bytes underneath.
            "NoncurrentVersionExpiration": {"NoncurrentDays": self.preview_expiry_days},
        }
        others = [rule for rule in rules if rule.get("ID") != PREVIEW_RULE_ID]
        self.client.put_bucket_lifecycle_configuration(Bucket=self.bucket,
                                                       LifecycleConfiguration={"Rules": [*others, ours]})

    @contextmanager
    def _translated(self, key: str) -> Iterator[None]:
        """Missing → KeyError; outage (connection, timeout, 5xx, throttling) → StorageUnavailable; rest as is.

        Other client errors (AccessDenied, NoSuchBucket) are configuration faults and propagate unchanged.
        """
        try:
            yield
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if _code(error) in _MISSING_CODES:
                raise KeyError(key) from error
            if status >= 500 or _code(error) in _TRANSIENT_CODES:
                raise StorageUnavailable(f"S3 bucket {self.bucket!r} answered {status} {_code(error)} for "
                                         f"{key!r}; retry later.") from error
            raise
        except (BotoConnectionError, HTTPClientError, IncompleteReadError) as error:
            raise StorageUnavailable(f"S3 bucket {self.bucket!r} did not answer for {key!r} "
                                     f"({type(error).__name__}); retry later.") from error


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
