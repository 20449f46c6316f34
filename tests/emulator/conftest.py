"""Start the Bedrock emulator once per session, as a real subprocess on a free port.

Tests talk to it the way the gateway will: with boto3's real ``bedrock-runtime``
client (botocore signs and parses everything), or with a raw HTTP client
signed by botocore's ``SigV4Auth`` when the exact bytes on the wire matter.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from .emulator_support import DEV_KEY, PROJECT_ROOT, REGION, STS_KEY, Emulator


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("emulator") / "stderr.log"
    accepted = [
        {"access_key_id": DEV_KEY[0], "secret_access_key": DEV_KEY[1]},
        {"access_key_id": STS_KEY[0], "secret_access_key": STS_KEY[1], "session_token": STS_KEY[2]},
    ]
    env = {**os.environ, "BEDROCK_EMULATOR_CREDENTIALS": json.dumps(accepted)}
    with log_path.open("w", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "bedrock_emulator", "--host", "127.0.0.1", "--port", str(port), "--region", REGION],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"emulator exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_emulator/requests", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"emulator did not start:\n{log_path.read_text()}")
                time.sleep(0.05)
        yield Emulator(url, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def make_client(emulator: Emulator) -> Callable[..., Any]:
    def make(
        key_id: str = DEV_KEY[0], secret: str = DEV_KEY[1], token: str | None = None, read_timeout: float = 10
    ) -> Any:
        return boto3.client(
            "bedrock-runtime",
            region_name=REGION,
            endpoint_url=emulator.url,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout, connect_timeout=5),
        )

    return make


@pytest.fixture(scope="session")
def client(make_client: Callable[..., Any]) -> Any:
    return make_client()


@pytest.fixture(scope="session")
def signed_post(emulator: Emulator) -> Callable[..., httpx.Response]:
    """POST exactly ``path`` (no re-encoding) signed by botocore, or unsigned with ``sign=False``."""

    def post(path: str, body: bytes | dict[str, Any], sign: bool = True, secret: str = DEV_KEY[1]) -> httpx.Response:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        url = f"{emulator.url}{path}"
        headers = {"Content-Type": "application/json"}
        if sign:
            aws_request = AWSRequest(method="POST", url=url, data=data, headers=headers)
            SigV4Auth(Credentials(DEV_KEY[0], secret), "bedrock", REGION).add_auth(aws_request)
            headers = dict(aws_request.headers.items())
        with httpx.Client(timeout=10) as http:
            return http.post(url, content=data, headers=headers)

    return post
