"""The gateway's own AWS credentials: ECS container credentials, rotated, picked up off the event loop."""

from __future__ import annotations

import datetime
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import pytest

from devstack import Stack, free_port
from tests.integration.conftest import Emulator, Keys

CRED_A = {"access_key_id": "ASIAROTATIONTESTAAAA", "secret_access_key": "rotation/secret/a", "session_token": "token-a"}
CRED_B = {"access_key_id": "ASIAROTATIONTESTBBBB", "secret_access_key": "rotation/secret/b", "session_token": "token-b"}
AUTH_TOKEN = "container-auth-token-for-test"


class ContainerCredentials:
    """A local stand-in for the ECS task metadata credential endpoint."""

    def __init__(self) -> None:
        self.current = CRED_A
        self.calls = 0
        self.bad_auth = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.calls += 1
                if self.headers.get("Authorization") != AUTH_TOKEN:
                    owner.bad_auth += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                # Inside botocore's advisory refresh window (15 min), so every
                # refresh the gateway asks for fetches again, as near expiry.
                expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=12)
                body = json.dumps({
                    "AccessKeyId": owner.current["access_key_id"],
                    "SecretAccessKey": owner.current["secret_access_key"],
                    "Token": owner.current["session_token"],
                    "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/credentials/task"


@pytest.fixture
def container_credentials() -> Iterator[ContainerCredentials]:
    server = ContainerCredentials()
    yield server
    server.server.shutdown()


def test_ecs_container_credentials_are_used_and_rotation_is_picked_up(
    container_credentials: ContainerCredentials, make_stack: Callable[..., Stack], keys: Keys, tmp_path: Path
) -> None:
    # (container_credentials is requested first so that it outlives the stack.)
    accepted = tmp_path / "emulator-credentials.json"
    accepted.write_text(json.dumps([CRED_A, CRED_B]))
    stack = make_stack(
        env={
            "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None,
            "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": container_credentials.url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": AUTH_TOKEN,
            "EXTPROC_CREDENTIAL_REFRESH_SECONDS": "0.5",
        },
        emulator_args=["--credentials", str(accepted)],
    )
    emulator = Emulator(stack.emulator_url)
    client = anthropic.Anthropic(base_url=stack.url, api_key=keys.alpha, max_retries=0)

    def ask() -> dict:
        emulator.clear()
        client.messages.create(model="haiku", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        (seen,) = emulator.requests()
        assert seen["signature_valid"] is True
        assert "x-amz-security-token" in seen["headers"]
        assert "x-amz-security-token" in seen["headers"]["authorization"]  # signed, not just sent
        return seen

    assert ask()["access_key_id"] == CRED_A["access_key_id"]
    container_credentials.current = CRED_B
    deadline = time.monotonic() + 15
    while ask()["access_key_id"] != CRED_B["access_key_id"]:
        assert time.monotonic() < deadline, "the gateway never picked up the rotated credentials"
        time.sleep(0.2)
    assert container_credentials.calls >= 2
    assert container_credentials.bad_auth == 0
    log = stack.processes["extproc"].log.read_text()
    for secret in ("rotation/secret", "token-a", "token-b", AUTH_TOKEN):
        assert secret not in log
