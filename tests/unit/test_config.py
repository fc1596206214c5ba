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
    assert error_of({"ignoreHosts": "node[0-"}) == (
        "/etc/ccsa.json: key 'ignoreHosts': invalid regular expression 'node[0-': "
        "unterminated character set at position 4")


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
    assert set(config.secrets) == {JWT, "hunter2hunter2"}
    assert "hunter2" not in error_of({"natsPassword": ["hunter2"]})


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
