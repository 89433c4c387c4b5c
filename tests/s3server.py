"""A real S3-compatible server on loopback for tests: moto in server mode, in a thread
of the test process, listening on 127.0.0.1 only (nothing here leaves the machine).

    with moto_s3() as s3:                 # a server with one fresh bucket
        storage = open_storage(s3.archive_url("archive"), s3.env)
        ...
        assert s3.keys() == ["archive/p1/0-out.png"]

``s3.env`` holds the AWS_* variables the tracker reads (endpoint, keys, region);
``s3.keys()``, ``s3.read(key)`` and ``s3.multipart_uploads()`` look into the bucket
through boto3 (moto's own dependency), independently of the code under test. Each
``MotoS3`` has its own bucket; moto keeps every bucket in this process's memory.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

#: keys the server is given (moto accepts any; tests check they never leak)
ACCESS_KEY_ID = "AKIATRACKERTEST0001"
SECRET_ACCESS_KEY = "tracker-test-secret-key/DO-NOT-LEAK-0123456789"
REGION = "us-east-1"


class MotoS3:
    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""
        self.bucket = f"tracker-{uuid.uuid4().hex[:12]}"
        self._client: Any = None

    def __enter__(self) -> MotoS3:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request else
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )
        self._client.create_bucket(Bucket=self.bucket)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        self._server.stop()

    @property
    def env(self) -> dict[str, str]:
        """The AWS_* variables that point the tracker at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_REGION": REGION,
        }

    def archive_url(self, prefix: str = "") -> str:
        """``s3://BUCKET/PREFIX`` for TRACKER_ARCHIVE_URL."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``, sorted."""
        found: list[str] = []
        pages = self._client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(found)

    def read(self, key: str) -> bytes:
        answer = self._client.get_object(Bucket=self.bucket, Key=key)
        with answer["Body"] as body:
            data: bytes = body.read()
        return data

    def head(self, key: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=key)
        return answer

    def multipart_uploads(self) -> list[str]:
        """Keys of the multipart uploads begun and neither completed nor aborted."""
        answer = self._client.list_multipart_uploads(Bucket=self.bucket)
        return sorted(item["Key"] for item in answer.get("Uploads", []))


@contextmanager
def moto_s3() -> Iterator[MotoS3]:
    """A moto S3 server on 127.0.0.1 with a fresh bucket, stopped on leaving."""
    with MotoS3() as server:
        yield server
