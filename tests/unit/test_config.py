"""Config: upstream keys and defaults, both spellings, and one clear line per error."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.config import (
    KEYS,
    Config,
    load_config,
    parse_config,
    reference_table,
)
from cc_slurm_adapter.errors import ConfigError

JWT = "eyJhbGciOiJFZERTQSJ9.eyJyb2xlcyI6WyJhcGkiXX0.c2lnbmF0dXJlc2VjcmV0"
BASE: dict[str, Any] = {"ccRestUrl": "https://cc.example.org", "ccRestJwt": JWT}


def load(extra: dict[str, Any] | None = None, *, drop: tuple[str, ...] = (),
         purpose: str = "daemon") -> Any:
    raw = {k: v for k, v in {**BASE, **(extra or {})}.items() if k not in drop}
    return parse_config(json.dumps(raw), "/etc/ccsa.json", purpose=purpose)  # type: ignore[arg-type]


def error_of(extra: dict[str, Any] | None = None, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(extra, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert JWT not in message
    return message


def test_upstream_defaults_from_the_docs_table() -> None:
    config = load().config
    assert config.pid_file_path == "/run/cc-slurm-adapter/daemon.pid"
    assert str(config.prep_sock_listen_path) == "unix:/run/cc-slurm-adapter/daemon.sock"
    assert str(config.prep_sock_connect_path) == "unix:/run/cc-slurm-adapter/daemon.sock"
    # The docs' example says last_run and slurmQueryMaxRetries 5; the table wins.
    assert config.last_run_path == "/var/lib/cc-slurm-adapter/lastrun"
    assert config.slurm_max_retries == 10
    assert (config.slurm_poll_interval, config.slurm_query_delay) == (60, 1)
    assert config.slurm_query_max_span == 604800
    assert config.cc_poll_interval == 21600
    assert config.cc_rest_submit_jobs is True
    assert config.gpu_pci_addrs == () and config.ignore_hosts is None
    assert (config.nats_server, config.nats_port, config.nats_subject) == ("", 4222, "jobs")
    assert config.state_path == "/var/lib/cc-slurm-adapter/state.db"
    assert config.cc_rest_profile == "v1.5"


def test_key_table_and_dataclass_defaults_agree() -> None:
    default = Config()
    for key in KEYS:
        attr = re.sub(r"(?<!^)(?=[A-Z])", "_", key.name).lower().replace("n_key", "nkey")
        value = getattr(default, attr)
        if key.kind == "socket":
            value = value.path
        elif key.kind == "gpumap":
            value = dict(value)
        elif key.kind == "regex":
            value = value.pattern if value else ""
        expected = "" if key.default is None else key.default
        assert value == expected, key.name


def test_upstream_example_config_loads(tmp_path: Path) -> None:
    example = {
        "pidFilePath": "/run/cc-slurm-adapter/daemon.pid",
        "prepSockListenPath": "/run/cc-slurm-adapter/daemon.sock",
        "prepSockConnectPath": "/run/cc-slurm-adapter/daemon.sock",
        "lastRunPath": "/var/lib/cc-slurm-adapter/last_run",
        "slurmPollInterval": 60, "slurmQueryDelay": 1, "slurmQueryMaxSpan": 604800,
        "slurmQueryMaxRetries": 5, "ccPollInterval": 21600, "ccRestSubmitJobs": True,
        "ccRestUrl": "https://my-cc-backend-instance.example", "ccRestJwt": JWT,
        "gpuPciAddrs": {"^nodehostname0[0-9]$": ["00000000:00:10.0", "00000000:00:3F.0"],
                        "^nodehostname1[0-9]$": ["00000000:00:10.0", "00000000:00:3F.0"]},
        "ignoreHosts": "^nodehostname9\\w+$", "natsServer": "mynatsserver.example",
        "natsPort": 4222, "natsSubject": "mysubject", "natsUser": "myuser",
        "natsPassword": "123456789", "natsCredsFile": "/etc/cc-slurm-adapter/nats.creds",
        "natsNKeySeedFile": "/etc/ss-slurm-adapter/nats.nkey",
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(example))
    path.chmod(0o600)
    loaded = load_config(str(path))
    assert loaded.warnings == []
    config = loaded.config
    assert config.slurm_max_retries == 5  # the docs' spelling is read too
    assert config.gpu_pci_addresses("nodehostname05") == ("00000000:00:10.0",
                                                          "00000000:00:3F.0")
    assert config.gpu_pci_addresses("other") is None
    assert config.is_ignored_host("nodehostname9x") and not config.is_ignored_host("node1")
    assert config.nats_nkey_seed_file == "/etc/ss-slurm-adapter/nats.nkey"
    assert config.nats_enabled


def test_first_matching_gpu_regex_wins_in_file_order() -> None:
    config = load({"gpuPciAddrs": {"^node": ["A"], "^node1$": ["B"]}}).config
    assert config.gpu_pci_addresses("node1") == ("A",)


def test_both_retry_spellings_code_spelling_wins_with_warning() -> None:
    loaded = load({"slurmQueryMaxRetries": 3, "slurmMaxRetries": 7})
    assert loaded.config.slurm_max_retries == 7
    assert loaded.warnings == [
        "/etc/ccsa.json: both 'slurmQueryMaxRetries' and 'slurmMaxRetries' are set; "
        "'slurmMaxRetries' wins, as in upstream's code"]


def test_unknown_key_warns_with_nearest_known_key() -> None:
    loaded = load({"slurmPolInterval": 5})
    assert loaded.warnings == ["/etc/ccsa.json: unknown key 'slurmPolInterval' is ignored; "
                               "did you mean 'slurmPollInterval'?"]
    assert loaded.config.slurm_poll_interval == 60


def test_unknown_key_without_a_near_match() -> None:
    assert load({"zzz": 1}).warnings == ["/etc/ccsa.json: unknown key 'zzz' is ignored"]


def test_removed_and_phantom_keys_warn() -> None:
    warnings = load({"ipcSockPath": "/x", "slurmMaxConcurrent": 4}).warnings
    assert any("'ipcSockPath' was removed upstream" in w for w in warnings)
    assert any("'slurmMaxConcurrent' appears in upstream's docs" in w for w in warnings)


def test_zero_interval_is_clamped_like_upstream() -> None:
    loaded = load({"slurmPollInterval": 0})
    assert loaded.config.slurm_poll_interval == 1
    assert "using 1 second" in loaded.warnings[0]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        load_config(str(missing))
    assert str(info.value) == f"{missing}: cannot read config file: No such file or directory"


def test_missing_default_file_is_fine_for_the_hook_and_tools() -> None:
    def reader(path: str) -> str:
        raise FileNotFoundError(2, "No such file or directory")

    loaded = load_config(None, purpose="hook", reader=reader)
    assert loaded.config == Config()
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(None, purpose="daemon", reader=reader)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))  # a directory
    assert str(info.value).startswith(f"{tmp_path}: cannot read config file: ")


def test_syntax_error_gives_line_and_column() -> None:
    text = '{\n  "ccRestUrl": "https://x",\n  "ccRestJwt": "t",\n}\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/c.json")
    assert str(info.value) == ("/c.json: invalid JSON at line 4, column 1: "
                               "Expecting property name enclosed in double quotes")


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[1, 2]", "/c.json")
    assert str(info.value) == "/c.json: expected a JSON object at the top level, got an array"


@pytest.mark.parametrize("key", ["ccRestUrl", "ccRestJwt"])
def test_missing_required_key(key: str) -> None:
    assert error_of(drop=(key,)) == (
        f"/etc/ccsa.json: key '{key}': is required (the daemon cannot reach cc-backend "
        f"without it)")


def test_required_keys_not_needed_by_the_hook() -> None:
    assert load(drop=("ccRestUrl", "ccRestJwt"), purpose="hook").config.cc_rest_url == ""


@pytest.mark.parametrize(("extra", "message"), [
    ({"slurmPollInterval": "60"}, "key 'slurmPollInterval': expected a whole number, got a string"),
    ({"slurmPollInterval": 1.5}, "key 'slurmPollInterval': expected a whole number, got 1.5"),
    ({"slurmPollInterval": True},
     "key 'slurmPollInterval': expected a whole number, got a boolean"),
    ({"ccRestSubmitJobs": "yes"}, "key 'ccRestSubmitJobs': expected true or false, got a string"),
    ({"natsServer": 5}, "key 'natsServer': expected a string, got a number"),
    ({"ignoreHosts": ["a"]}, "key 'ignoreHosts': expected a string, got an array"),
    ({"gpuPciAddrs": ["a"]}, "key 'gpuPciAddrs': expected an object of hostname regex to "
                             "PCI address list, got an array"),
    ({"gpuPciAddrs": {"^n": "0000:00:01.0"}},
     "key 'gpuPciAddrs': entry '^n': expected a list of PCI address strings, got a string"),
    ({"ccRestJwt": 12345}, "key 'ccRestJwt': expected a string, got a number"),
])
def test_wrong_types(extra: dict[str, Any], message: str) -> None:
    assert error_of(extra) == f"/etc/ccsa.json: {message}"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("slurmPollInterval", -5, "must be at least 0, got -5 (negative)"),
    ("slurmQueryDelay", -1, "must be at least 0, got -1 (negative)"),
    ("ccPollInterval", -60, "must be at least 1, got -60 (negative)"),
    ("slurmQueryMaxSpan", 0, "must be at least 1, got 0 (too small)"),
    ("natsPort", 70000, "must be at most 65535, got 70000"),
])
def test_out_of_range(key: str, value: int, message: str) -> None:
    assert error_of({key: value}) == f"/etc/ccsa.json: key '{key}': {message}"


def test_invalid_regex_in_ignore_hosts() -> None:
    # RE2's own reason (Go's regexp says "missing closing ]: `[0-`" for the same pattern)
    assert error_of({"ignoreHosts": "node[0-"}) == (
        "/etc/ccsa.json: key 'ignoreHosts': invalid regular expression 'node[0-': "
        "missing ]: [0- (RE2 syntax, as upstream's Go regexp: no backreferences or lookaround)")


@pytest.mark.parametrize("pattern", [r"(node)\1", r"node(?=1)", r"(?<!x)node", r"(?!a)b"])
@pytest.mark.parametrize("key", ["ignoreHosts", "gpuPciAddrs"])
def test_patterns_go_cannot_compile_are_errors(pattern: str, key: str) -> None:
    """Backreferences and lookaround: Python's re takes them, Go's regexp (RE2) does not."""
    value: Any = pattern if key == "ignoreHosts" else {pattern: ["0000:00:01.0"]}
    message = error_of({key: value})
    assert message.startswith(f"/etc/ccsa.json: key '{key}': invalid regular expression ")


def test_catastrophic_regex_matches_in_linear_time() -> None:
    """(a+)+$ took 13 s on a 29-character hostname with Python's re (issue 10)."""
    import time

    config = load({"ignoreHosts": "(a+)+$", "gpuPciAddrs": {"(a+)+$": ["0000:00:01.0"]}}).config
    assert type(config.ignore_hosts).__module__.startswith("re2")
    hostname = "a" * 42 + "!"
    started = time.monotonic()
    assert not config.is_ignored_host(hostname)
    assert config.gpu_pci_addresses(hostname) is None
    assert time.monotonic() - started < 0.5
    assert config.is_ignored_host("aaa")


def test_go_regex_syntax_is_read() -> None:
    """Go's (RE2's) syntax: \\z, [[:digit:]], (?i) and \\pL; Python's re lacks the first two."""
    config = load({"ignoreHosts": r"(?i)^login[[:digit:]]+\z",
                   "gpuPciAddrs": {r"^\pL+\d$": ["A"]}}).config
    assert config.is_ignored_host("LOGIN12") and not config.is_ignored_host("login12x")
    assert config.gpu_pci_addresses("gpu1") == ("A",)


def test_invalid_regex_in_gpu_map() -> None:
    assert error_of({"gpuPciAddrs": {"(node": []}}).startswith(
        "/etc/ccsa.json: key 'gpuPciAddrs': invalid regular expression '(node': ")


@pytest.mark.parametrize(("value", "message"), [
    ("tcp:127.0.0.1", "malformed TCP socket address 'tcp:127.0.0.1'; expected tcp:HOST:PORT, "
                      "tcp:[IPv6]:PORT or tcp::PORT"),
    ("tcp:host:http", "malformed TCP socket address 'tcp:host:http': port must be a number "
                      "from 1 to 65535"),
    ("tcp:host:0", "malformed TCP socket address 'tcp:host:0': port must be a number "
                   "from 1 to 65535"),
    ("unix:", "malformed UNIX socket address 'unix:': the path is empty"),
    ("", "empty socket address"),
    ("http://host:1234", "malformed socket address 'http://host:1234'; expected a path, "
                         "unix:PATH or tcp:HOST:PORT"),
])
def test_malformed_socket_address(value: str, message: str) -> None:
    assert error_of({"prepSockListenPath": value}) == (
        f"/etc/ccsa.json: key 'prepSockListenPath': {message}")


@pytest.mark.parametrize(("value", "shown"), [
    ("/run/x.sock", "unix:/run/x.sock"),
    ("unix:/run/x.sock", "unix:/run/x.sock"),
    ("tcp:127.0.0.1:12345", "tcp:127.0.0.1:12345"),
    ("tcp:0.0.0.0:12345", "tcp:0.0.0.0:12345"),
    ("tcp:[::1]:12345", "tcp:[::1]:12345"),
    ("tcp:[::]:12345", "tcp:[::]:12345"),
    ("tcp::12345", "tcp::12345"),
])
def test_socket_address_forms(value: str, shown: str) -> None:
    assert str(load({"prepSockConnectPath": value}).config.prep_sock_connect_path) == shown


def test_trailing_slash_on_url() -> None:
    assert error_of({"ccRestUrl": "https://cc.example.org/"}) == (
        "/etc/ccsa.json: key 'ccRestUrl': must not end with a slash "
        "(got 'https://cc.example.org/'); use 'https://cc.example.org'")


def test_url_must_be_http() -> None:
    assert error_of({"ccRestUrl": "cc.example.org"}) == (
        "/etc/ccsa.json: key 'ccRestUrl': expected an http:// or https:// URL, "
        "got 'cc.example.org'")


def test_profile_must_be_known() -> None:
    assert error_of({"ccRestProfile": "v2"}) == (
        "/etc/ccsa.json: key 'ccRestProfile': expected one of v1.5, v1.4, v1.3, got 'v2'")


def test_jobs_must_go_somewhere() -> None:
    assert error_of({"ccRestSubmitJobs": False}) == (
        "/etc/ccsa.json: key 'ccRestSubmitJobs': is false and natsServer is empty: "
        "jobs would go nowhere")
    assert not load({"ccRestSubmitJobs": False, "natsServer": "nats"}).config.cc_rest_submit_jobs


def test_opaque_token_is_accepted() -> None:
    assert load({"ccRestJwt": "opaque-proxy-token"}).config.cc_rest_jwt == "opaque-proxy-token"


def test_secrets_stay_out_of_repr_and_messages() -> None:
    config = load({"natsPassword": "hunter2hunter2"}).config
    assert JWT not in repr(config) and "hunter2hunter2" not in repr(config)
    # the JWT's signature is registered on its own too, should it show alone
    assert set(config.secrets) == {JWT, "hunter2hunter2", "c2lnbmF0dXJlc2VjcmV0"}
    assert "hunter2" not in error_of({"natsPassword": ["hunter2"]})


@pytest.mark.parametrize("password", ["Q", "Zq7", "s" * 40])
def test_url_credentials_are_secrets(password: str) -> None:
    url = f"https://adm:{password}@cc.example.org:8443"
    config = load({"ccRestUrl": url}).config
    assert config.cc_rest_url == url  # kept for the client, which sends them
    assert "cc_rest_url='https://***@cc.example.org:8443'" in repr(config)
    assert password not in repr(config).replace(JWT, "")
    assert password in config.secrets and f"adm:{password}" in config.secrets
    assert "adm" not in config.secrets  # a user name next to a password is not masked alone
    message = error_of({"ccRestUrl": url + "/"})
    assert message == ("/etc/ccsa.json: key 'ccRestUrl': must not end with a slash "
                       "(got 'https://***@cc.example.org:8443/'); "
                       "use 'https://***@cc.example.org:8443'")
    message = error_of({"ccRestUrl": f"https://adm:{password}@cc.example.org:99999"})
    assert "https://***@cc.example.org:99999" in message and f":{password}@" not in message


def test_percent_encoded_url_password_is_registered_decoded_too() -> None:
    config = load({"ccRestUrl": "https://adm:p%40ss@cc.example.org"}).config
    assert {"p%40ss", "p@ss"} <= set(config.secrets)


@pytest.mark.parametrize(("url", "problem"), [
    ("https://cc example.org", "must not contain spaces, line breaks or control characters"),
    ("https://cc.example.org\n", "must not contain spaces, line breaks or control characters"),
    ("https://cc.example.org:99999", "the port must be a number from 1 to 65535, got 99999"),
    ("https://cc.example.org:0", "the port must be a number from 1 to 65535, got 0"),
    ("https://cc.example.org:abc", "not a valid URL (Invalid port: 'abc')"),
    ("https://[::1", "the IPv6 address has no closing ']'"),
    ("https://[::g]:8080", "not a valid URL"),
    ("http://", "has no host name"),
    ("https://adm@cc.example.org:x@", "has no host name"),
    ("https://cc.example.org?x=1", "must not have a query (?...) or a fragment (#...)"),
    ("https://cc.exa$mple.org", "the host name is not valid"),
    ("ftp://cc.example.org", "expected an http:// or https:// URL"),
])
def test_urls_are_parsed_not_prefix_matched(url: str, problem: str) -> None:
    message = error_of({"ccRestUrl": url})
    assert message.startswith(f"/etc/ccsa.json: key 'ccRestUrl': {problem}")


@pytest.mark.parametrize("url", ["https://cc.example.org", "http://127.0.0.1:8080",
                                 "https://[::1]:8443", "https://cc.example.org/cc-backend",
                                 "https://b\u00fccher.example", "HTTPS://CC.EXAMPLE.ORG"])
def test_good_urls(url: str) -> None:
    assert load({"ccRestUrl": url}).config.cc_rest_url == url


def test_every_int_key_has_a_sane_maximum() -> None:
    for key in KEYS:
        if key.kind == "int":
            assert key.maximum is not None and key.maximum < 2**31, key.name
            assert error_of({key.name: key.maximum + 1}).endswith(
                f"must be at most {key.maximum}, got {key.maximum + 1}")


def test_huge_float_interval_is_one_line() -> None:
    assert error_of({"slurmPollInterval": 1e300}) == (
        "/etc/ccsa.json: key 'slurmPollInterval': must be at most 86400, got 1e+300")


@pytest.mark.parametrize(("token", "problem"), [
    ("   ", "is blank (only whitespace)"),
    ("\t\n", "is blank (only whitespace)"),
    (JWT + "\n", "must not contain spaces, line breaks or control characters"),
    ("Bearer " + JWT, "must not contain spaces, line breaks or control characters"),
])
def test_token_must_be_one_word(token: str, problem: str) -> None:
    message = error_of({"ccRestJwt": token})
    assert message.startswith(f"/etc/ccsa.json: key 'ccRestJwt': {problem}")


def test_deep_nesting_is_one_line() -> None:
    text = '{"ccRestUrl": "https://x", "ccRestJwt": "t", "x": ' + "[" * 10_000 + "]" * 10_000 + "}"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/c.json")
    assert str(info.value) == "/c.json: invalid JSON: nested too deeply"


def test_5000_digit_integer_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('{"slurmPollInterval": ' + "9" * 5000 + "}", "/c.json")
    assert str(info.value) == "/c.json: invalid JSON: a number with 5000 digits (at most 30)"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_numbers_json_does_not_have_are_errors(literal: str) -> None:
    with pytest.raises(ConfigError, match=r"^/c\.json: invalid JSON: "):
        parse_config('{"slurmPollInterval": ' + literal + "}", "/c.json")


def test_lone_surrogate_key_warns_printably() -> None:
    loaded = parse_config('{"\\ud800x": 1}', "/c.json", purpose="tool")
    assert loaded.warnings == ["/c.json: unknown key '\\ud800x' is ignored"]
    loaded.warnings[0].encode("utf-8")  # printable on any terminal


@pytest.mark.parametrize(("text", "message"), [
    ('{"pidFilePath": "/run/\\ud800"}',
     "key 'pidFilePath': contains a lone surrogate (an invalid \\uD800-\\uDFFF escape)"),
    ('{"statePath": "/var/\\u0000x"}', "key 'statePath': contains a NUL character"),
    ('{"ignoreHosts": "\\udc00"}',
     "key 'ignoreHosts': contains a lone surrogate (an invalid \\uD800-\\uDFFF escape)"),
])
def test_bad_text_values(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/c.json", purpose="tool")
    assert str(info.value) == f"/c.json: {message}"


def _load_soon(path: str) -> str:
    """load_config in a thread that must finish within 5 s (a FIFO once hung it)."""
    import threading

    result: list[str] = []

    def target() -> None:
        try:
            load_config(path, purpose="tool")
            result.append("loaded")
        except ConfigError as exc:
            result.append(str(exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(5)
    assert result, f"load_config({path!r}) did not return within 5 s"
    return result[0]


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    assert _load_soon(str(fifo)) == (f"{fifo}: cannot read config file: "
                                     f"not a regular file (a FIFO)")


def test_dev_zero_is_refused() -> None:
    assert _load_soon("/dev/zero") == ("/dev/zero: cannot read config file: "
                                       "not a regular file (a character device)")


def test_directory_is_refused(tmp_path: Path) -> None:
    assert _load_soon(str(tmp_path)) == (f"{tmp_path}: cannot read config file: "
                                         f"not a regular file (a directory)")


def test_file_over_1_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{" + " " * (1024 * 1024) + "}")
    assert _load_soon(str(path)) == f"{path}: cannot read config file: larger than 1024 KiB"
    path.write_text("{" + " " * (1024 * 1024 - 2) + "}")  # exactly 1 MiB is fine
    assert _load_soon(str(path)) == "loaded"


def test_profile_names_come_from_the_profiles_table() -> None:
    from cc_slurm_adapter import config as config_module
    from cc_slurm_adapter.profiles import DEFAULT_PROFILE, PROFILES

    assert tuple(PROFILES) == config_module.PROFILES
    assert config_module.KEYS_BY_NAME["ccRestProfile"].default == DEFAULT_PROFILE.name


def test_config_fields_are_the_keys() -> None:
    """Config has one field per key (plus source), and takes its defaults from KEYS."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(Config)} - {"source"}
    assert names == {re.sub(r"(?<!^)(?=[A-Z])", "_", k.name).lower().replace("n_key", "nkey")
                     for k in KEYS}


def test_world_readable_file_with_jwt_warns(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BASE))
    path.chmod(0o644)
    assert load_config(str(path)).warnings == [
        f"{path}: the file holds ccRestJwt and can be read by every user (mode 0644); "
        f"chmod 640 or 600 it"]
    path.chmod(0o640)
    assert load_config(str(path)).warnings == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot read config file: Permission denied"):
        load_config(str(path))


def test_reference_table_lists_every_key() -> None:
    table = reference_table()
    for key in KEYS:
        assert f"`{key.name}`" in table
