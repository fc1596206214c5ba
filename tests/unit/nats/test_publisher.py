"""Publisher pieces that need no server: URL, TLS, auth options, errors, results."""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any

import nats.errors
import pytest

from cc_slurm_adapter.config import Config
from cc_slurm_adapter.nats import NatsPublisher, PublishResult, subject_matches
from cc_slurm_adapter.nats.options import connect_plan, server_url, uses_tls
from cc_slurm_adapter.nats.publisher import describe_error, error_kind


def cfg(**over: Any) -> Config:
    return dataclasses.replace(Config(), **{"nats_server": "nats.example.org", **over})


@pytest.mark.parametrize(("over", "url"), [
    ({}, "nats://nats.example.org:4222"),  # upstream: nats://<natsServer>:<natsPort>
    ({"nats_port": 4333}, "nats://nats.example.org:4333"),
    ({"nats_tls": True}, "tls://nats.example.org:4222"),
    ({"nats_tls_ca_file": "/ca.pem"}, "tls://nats.example.org:4222"),
    ({"nats_server": "::1"}, "nats://[::1]:4222"),
    ({"nats_server": "tls://n1:4443"}, "tls://n1:4443"),
])
def test_server_url(over: dict[str, Any], url: str) -> None:
    assert server_url(cfg(**over)) == url


def test_auth_options_each_applied_if_set() -> None:
    plan = connect_plan(cfg(nats_user="u", nats_password="p", nats_creds_file="/c.creds"))
    assert plan.kwargs == {"user": "u", "password": "p", "user_credentials": "/c.creds"}
    assert plan.auth == "natsUser/natsPassword, natsCredsFile"
    assert "p" not in plan.auth
    assert connect_plan(cfg(nats_nkey_seed_file="/u.nk")).kwargs == {"nkeys_seed": "/u.nk"}
    assert connect_plan(cfg()).kwargs == {} and connect_plan(cfg()).auth == "no credentials"


def test_tls_context(tmp_path: Any) -> None:
    assert not uses_tls(cfg())
    plan = connect_plan(cfg(nats_tls=True))
    context = plan.kwargs["tls"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with pytest.raises(OSError):
        connect_plan(cfg(nats_tls_ca_file=str(tmp_path / "missing.pem")))


@pytest.mark.parametrize(("pattern", "subject", "match"), [
    ("jobs", "jobs", True), ("jobs", "jobs.x", False), ("jobs.*", "jobs.x", True),
    ("jobs.*", "jobs", False), ("jobs.>", "jobs.a.b", True), ("jobs.>", "jobs", False),
    (">", "jobs", True), ("*.x", "a.x", True), ("*.x", "a.y", False)])
def test_subject_matches(pattern: str, subject: str, match: bool) -> None:
    assert subject_matches(pattern, subject) is match


def test_errors_are_one_line_and_name_the_credentials_not_their_values() -> None:
    auth = describe_error(nats.errors.Error("nats: 'Authorization Violation'"),
                          "natsCredsFile")
    assert auth == "authorization violation: the server refused natsCredsFile"
    assert describe_error(ConnectionRefusedError(111, "Connect call failed")) == \
        "connection refused"
    assert describe_error(FileNotFoundError(2, "No such file or directory", "/x.creds")) == \
        "No such file or directory: /x.creds"
    assert describe_error(TimeoutError()) == "timed out"
    assert "client certificate" in describe_error(BrokenPipeError(32, "Broken pipe"), tls=True)
    # the TLS 1.3 race: the same refusal shows as an alert or a lost connection
    assert error_kind(BrokenPipeError(), tls=True) == error_kind(
        ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE]"), tls=True) == "tls"
    assert error_kind(nats.errors.AuthorizationError()) == "auth"


async def test_publish_before_connect_is_retry() -> None:
    pub = NatsPublisher(cfg())
    assert not pub.connected
    result = await pub.publish("start_job", b"{}", "id")
    assert result == PublishResult(ok=False, retry=True, detail="not connected to NATS")
    bad = await pub.publish("nodestate", b"{}", "id")
    assert (bad.ok, bad.retry) == (False, False)
    await pub.close()
    assert pub.state == "closed"
