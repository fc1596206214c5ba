"""Secrets never reach a log line: any logger, any length, tracebacks and stacks included.

Each case runs with a secret of 1, 3 and 40 characters. The short ones are chosen so
that no other character of the line can be mistaken for them: the whole output must
not contain them at all.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest

from cc_slurm_adapter import log

FORTY = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.s1g"  # JWT-shaped, 40 characters
SECRETS = ["Q", "Zq7", FORTY]
assert [len(s) for s in SECRETS] == [1, 3, 40]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the logging module back as it was, and forget the registered secrets."""
    root = logging.getLogger()
    ours = logging.getLogger(log.ROOT)
    saved = (list(root.handlers), root.level, ours.level, ours.propagate)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])
    ours.propagate = saved[3]
    log.clear_secrets()


@pytest.fixture
def output(restore_logging: None) -> io.StringIO:
    """Our logging set-up on a string buffer at -debug 5."""
    stream = io.StringIO()
    log.setup_logging(5, stream=stream)
    return stream


@pytest.fixture(params=SECRETS, ids=["1-char", "3-char", "40-char"])
def secret(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    log.add_secrets([value])
    return value


OURS = logging.getLogger("cc_slurm_adapter.ccbackend")


@pytest.mark.parametrize(("template", "shown"), [
    ("sending Authorization: Bearer {}", "sending Authorization: Bearer ***"),
    ("sending X-Auth-Token: {}", "sending X-Auth-Token: ***"),
    ("nats connect with natsPassword={} failed", "nats connect with natsPassword=*** failed"),
    ('config {{"ccRestJwt": "{}", "natsPort": 4222}}',
     'config {"ccRestJwt": "***", "natsPort": 4222}'),
    ("POST https://adm:{}@cc.example.org/api/jobs/start_job/ failed",
     "POST https://***@cc.example.org/api/jobs/start_job/ failed"),
])
def test_secret_in_a_value_context_is_masked(output: io.StringIO, secret: str, template: str,
                                             shown: str) -> None:
    OURS.warning(template.format(secret))
    # and once more through %-arguments, the way log calls are written
    OURS.warning(template.replace("{}", "%s").replace("{{", "{").replace("}}", "}"), secret)
    text = output.getvalue()
    assert secret not in text
    assert text == f"WARNING [cc_slurm_adapter.ccbackend] {shown}\n" * 2


def test_traceback_is_redacted(output: io.StringIO, secret: str) -> None:
    def fail() -> None:
        raise RuntimeError(f"cc-backend refused Authorization: Bearer {secret}")

    try:
        fail()
    except RuntimeError:
        OURS.exception("start_job failed")
    text = output.getvalue()
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: cc-backend refused Authorization: Bearer ***" in text
    assert secret not in text


def test_traceback_whose_message_holds_the_bare_jwt(output: io.StringIO) -> None:
    log.add_secrets([FORTY])
    try:
        raise ValueError(f"token {FORTY} rejected")
    except ValueError:
        OURS.error("request failed", exc_info=True)
    text = output.getvalue()
    assert "ValueError: token *** rejected" in text and FORTY not in text


def test_stack_info_is_redacted(output: io.StringIO) -> None:
    """A registered secret in the stack text (here: in a file name) is masked too."""
    log.add_secrets([FORTY])
    code = compile("OURS.warning('inside', stack_info=True)\n", f"/srv/{FORTY}/job.py", "exec")
    exec(code, {"OURS": OURS})
    text = output.getvalue()
    assert "Stack (most recent call last)" in text and '"/srv/***/job.py"' in text
    assert FORTY not in text


def test_httpx_own_logger_line(output: io.StringIO, secret: str) -> None:
    """httpx logs every request's URL on its own logger, credentials included."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.get(f"https://adm:{secret}@cc.example.org/api/jobs/",
                   headers={"X-Auth-Token": secret})
    text = output.getvalue()
    assert 'INFO [httpx] HTTP Request: GET https://***@cc.example.org/api/jobs/ ' \
           '"HTTP/1.1 200 OK"' in text
    assert secret not in text


def test_another_librarys_logger_goes_through_the_same_handler(output: io.StringIO,
                                                               secret: str) -> None:
    logging.getLogger("nats.aio.client").error("cannot connect to nats://jobs:%s@nats:4222",
                                               secret)
    assert output.getvalue() == ("ERROR [nats.aio.client] cannot connect to "
                                 "nats://***@nats:4222\n")


def test_long_secret_is_masked_anywhere(output: io.StringIO) -> None:
    log.add_secrets([FORTY])
    OURS.warning("glued:%sx and quoted %r", FORTY, FORTY)
    assert output.getvalue().endswith("glued:***x and quoted '***'\n")


def test_short_secrets_do_not_destroy_the_log(output: io.StringIO) -> None:
    """A 1- or 3-character secret is masked only in value contexts; a 4-11 character one
    only as a whole word."""
    log.add_secrets(["a", "api", "node"])
    OURS.warning("cancelled a job on node17 with the api role; password is node")
    assert output.getvalue().endswith(
        "cancelled a job on node17 with the api role; password is ***\n")


def test_escaped_forms_of_a_secret(output: io.StringIO) -> None:
    log.add_secrets(["p@ss'w\\rd"])
    OURS.warning("url %s repr %r", "nats://u:p%40ss%27w%5Crd@h", "p@ss'w\\rd")
    text = output.getvalue()
    assert "p%40ss" not in text and "ss'w" not in text and "ss\\'w" not in text


def test_third_party_loggers_follow_the_level(restore_logging: None) -> None:
    """httpx's request lines are trace output: hidden at -debug 4, shown at 5."""
    log.setup_logging(4, stream=io.StringIO())
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger(log.ROOT).isEnabledFor(logging.DEBUG)
    log.setup_logging(5, stream=io.StringIO())
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert sum(isinstance(h, log.RedactingHandler) for h in logging.getLogger().handlers) == 1


@pytest.mark.parametrize("hostile", ["a." * 50_000, "password='" * 12_000, "x://" * 40_000,
                                     "Bearer " * 20_000])
def test_redaction_is_fast_on_hostile_lines(hostile: str) -> None:
    """Log lines carry job names: no pattern may backtrack badly (generous bound)."""
    import time

    log.add_secrets(["node", FORTY])
    try:
        started = time.monotonic()
        log.redact(hostile)
        assert time.monotonic() - started < 2.0
    finally:
        log.clear_secrets()


def test_the_handler_writes_to_the_current_stderr(capsys: pytest.CaptureFixture[str],
                                                  restore_logging: None) -> None:
    log.setup_logging(2)
    log.add_secrets([FORTY])
    OURS.error("token %s", FORTY)
    assert capsys.readouterr().err == "ERROR [cc_slurm_adapter.ccbackend] token ***\n"
