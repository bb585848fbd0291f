"""Real storage servers on loopback for the ``durable_url`` tests, started by the tests.

* Azurite (Microsoft's Azure Storage emulator, from npm; ``scripts/install.sh --with-browser``
  installs it under ``.venv/azurite``) for ``az://``, with a made-up account and key;
* moto's S3 server (``ThreadedMotoServer``) for ``s3://``, with made-up keys.

Both listen on 127.0.0.1 on a free port; nothing here talks to another address, and every
environment handed to a sweep names its credentials and endpoint explicitly (a connection
string; ``AWS_ENDPOINT_URL``), so no SDK ever looks for a default credential (instance metadata).
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AZURITE = REPO / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
#: Variables of the real clouds that must not leak into a test's sweep.
CLOUD_ENV = ("AZURE_", "AWS_", "GOOGLE_", "GCE_", "HPO_DURABLE_URL", "FSSPEC_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def clean_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without any cloud credential."""
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key.startswith(CLOUD_ENV):
            del env[key]
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # never ask an instance metadata address
    return env


@dataclass
class Azurite:
    port: int
    account: str
    key: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account}"

    def connection_string(self, key: str | None = None) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};"
                f"AccountKey={key or self.key};BlobEndpoint={self.endpoint};")

    def env(self, **extra: str) -> dict[str, str]:
        env = clean_env()
        env["AZURE_STORAGE_CONNECTION_STRING"] = self.connection_string()
        env.update(extra)
        return env

    def make_container(self, name: str) -> None:
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(self.connection_string()) \
            .create_container(name)

    def read_only_connection_string(self, container: str) -> str:
        """A SAS that may read and list ``container`` but never write it."""
        from datetime import datetime, timedelta, timezone

        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        sas = generate_container_sas(self.account, container, account_key=self.key,
                                     permission=ContainerSasPermissions(read=True, list=True),
                                     expiry=datetime.now(timezone.utc) + timedelta(hours=2))
        return f"BlobEndpoint={self.endpoint};SharedAccessSignature={sas}"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if not AZURITE.exists() or shutil.which("node") is None:
        pytest.skip("Azurite is not installed (bash scripts/install.sh --with-browser installs "
                    "it under .venv/azurite)")
    port = free_port()
    account = "hpotest" + secrets.token_hex(3)
    key = base64.b64encode(b"made-up-key-" + secrets.token_bytes(24)).decode()
    folder = tmp_path_factory.mktemp("azurite")
    env = clean_env()
    env["AZURITE_ACCOUNTS"] = f"{account}:{key}"
    proc = subprocess.Popen([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                             "--location", str(folder), "--silent", "--skipApiVersionCheck",
                             "--loose", "--disableTelemetry"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port, proc)
    except RuntimeError as exc:
        proc.kill()
        err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
        pytest.skip(f"Azurite did not start ({exc}): {err}")
    yield Azurite(port, account, key)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@dataclass
class MotoS3:
    port: int
    key_id: str
    secret: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = clean_env()
        env.update(AWS_ACCESS_KEY_ID=self.key_id, AWS_SECRET_ACCESS_KEY=self.secret,
                   AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=self.endpoint)
        env.update(extra)
        return env

    def client(self):  # noqa: ANN201 - boto3's S3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret)

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def objects(self, bucket: str) -> dict[str, bytes]:
        client = self.client()
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket) for o in page.get("Contents", [])]
        return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    server_mod = pytest.importorskip("moto.server")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _wait_port(port)
    yield MotoS3(port, "AKIAMADEUP" + secrets.token_hex(5).upper(),
                 "made-up-secret-" + secrets.token_urlsafe(24))
    server.stop()
