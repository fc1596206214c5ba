"""``check``: what it rejects, what it warns about, and that it never prints a secret.

The JWT rules come from cc-backend-contract.md §3.1 and §3.3: alg exactly EdDSA,
``sub`` required by 1.5, ``exp``/``nbf`` enforced, roles exactly ["api"] or both
admin and api.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cc_slurm_adapter.check import token_report

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
SIGNATURE = "c2lnbmF0dXJlLW5vdC1jaGVja2Vk"


def jwt(payload: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part(header or {'alg': 'EdDSA', 'typ': 'JWT'})}.{part(payload)}.{SIGNATURE}"


GOOD = {"sub": "ccslurm", "roles": ["api"], "exp": NOW + 365 * 86400}


def report(token: str, profile: str = "v1.5") -> tuple[list[str], list[str]]:
    warnings, notes = token_report(token, profile=profile, now=NOW)
    for line in warnings + notes:
        assert token not in line and SIGNATURE not in line
    return warnings, notes


def test_a_good_token_only_gets_a_note() -> None:
    warnings, notes = report(jwt(GOOD))
    assert warnings == []
    assert notes == ["ccRestJwt is a JWT for user 'ccslurm', roles [\"api\"], expires "
                     "2028-01-15 08:00:00 UTC (decoded, not verified: the signature needs "
                     "cc-backend's key)"]


@pytest.mark.parametrize(("payload", "header", "warning"), [
    ({**GOOD, "exp": NOW - 60}, None,
     "ccRestJwt expired at 2027-01-15 07:59:00 UTC: cc-backend answers 401 (token is expired); "
     "make a new one"),
    ({**GOOD, "exp": NOW + 2 * 86400}, None,
     "ccRestJwt expires at 2027-01-17 08:00:00 UTC, in 2.0 days"),
    ({"sub": "ccslurm", "roles": ["api"]}, None,
     "ccRestJwt never expires (no 'exp' claim): if it leaks, it works until cc-backend's key "
     "pair changes"),
    ({**GOOD, "exp": "tomorrow"}, None,
     "ccRestJwt has an 'exp' claim that is not a number: cc-backend will answer 401"),
    ({**GOOD, "roles": ["user"]}, None,
     "ccRestJwt has the roles [\"user\"]: cc-backend takes job requests only from a token whose "
     "one role is api, or whose roles include both admin and api (401 otherwise)"),
    ({**GOOD, "roles": ["user", "api"]}, None,
     "ccRestJwt has the roles [\"user\", \"api\"]: cc-backend takes job requests only from a "
     "token whose one role is api, or whose roles include both admin and api (401 otherwise)"),
    ({**GOOD, "roles": []}, None,
     "ccRestJwt carries no roles: cc-backend needs the api role and answers 401"),
    ({"roles": ["api"], "exp": NOW + 365 * 86400}, None,
     "ccRestJwt has no 'sub' claim: cc-backend 1.5 answers 401 \"missing 'sub' claim in JWT\""),
    (GOOD, {"alg": "HS256"},
     "ccRestJwt is signed with alg 'HS256': cc-backend accepts only EdDSA (Ed25519) and will "
     "answer 401"),
    ({**GOOD, "nbf": NOW + 3600}, None,
     "ccRestJwt is not valid before 2027-01-15 09:00:00 UTC ('nbf'): cc-backend answers 401 "
     "until then"),
])
def test_token_warnings(payload: dict[str, Any], header: dict[str, Any] | None,
                        warning: str) -> None:
    warnings, _notes = report(jwt(payload, header))
    assert warnings == [warning]


def test_admin_and_api_roles_are_fine_and_sub_is_optional_before_15() -> None:
    token = jwt({"roles": ["admin", "api"], "exp": NOW + 365 * 86400})
    assert report(token, profile="v1.4")[0] == []
    assert report(token, profile="v1.5")[0] != []


def test_opaque_token_is_only_noted() -> None:
    warnings, notes = report("opaque-proxy-token")
    assert warnings == [] and notes[0].startswith("ccRestJwt is not a JWT")


@pytest.mark.parametrize("token", ["a.b.c", "e30.!!!.x", f"{'W' * 8}.{'e' * 10}.sig"])
def test_undecodable_jwt_warns(token: str) -> None:
    warnings, _notes = report(token)
    assert warnings == ["ccRestJwt looks like a JWT, but its header or payload is not base64url "
                        "JSON: cc-backend will answer 401 (token is malformed)"]


def test_huge_exp_does_not_crash() -> None:
    warnings, notes = report(jwt({**GOOD, "exp": 1e300}))
    assert warnings == [] and "expires 1e+300 (not a date)" in notes[0]


# ----------------------------------------------------------------------- the command


def run_check(tmp_path: Path, config: dict[str, Any] | str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "c.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    path.chmod(0o600)
    return subprocess.run([sys.executable, "-m", "cc_slurm_adapter", "check", "-config",
                           str(path)], capture_output=True, text=True, timeout=60)


BASE = {"ccRestUrl": "https://cc.example.org", "ccRestJwt": jwt(GOOD)}


@pytest.mark.parametrize("url", ["https://cc example.org", "https://cc.example.org\n",
                                 "https://cc.example.org:99999", "https://cc.example.org:abc",
                                 "https://[::1"])
def test_check_rejects_bad_urls(tmp_path: Path, url: str) -> None:
    result = run_check(tmp_path, {**BASE, "ccRestUrl": url})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "key 'ccRestUrl'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(("extra", "key"), [
    ({"slurmPollInterval": 1e300}, "slurmPollInterval"),
    ({"ccRestJwt": "  \t "}, "ccRestJwt"),
    ({"ignoreHosts": "(?=node)"}, "ignoreHosts"),
])
def test_check_rejects_bad_values(tmp_path: Path, extra: dict[str, Any], key: str) -> None:
    result = run_check(tmp_path, {**BASE, **extra})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and f"key '{key}'" in result.stderr


@pytest.mark.parametrize(("text", "reason"), [
    ('{"a": ' + "[" * 10_000 + "]" * 10_000 + "}", "nested too deeply"),
    ('{"slurmPollInterval": ' + "7" * 5000 + "}", "a number with 5000 digits"),
])
def test_check_hostile_json_is_one_line(tmp_path: Path, text: str, reason: str) -> None:
    result = run_check(tmp_path, text)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and reason in result.stderr
    assert "Traceback" not in result.stderr


def test_check_prints_a_lone_surrogate_key(tmp_path: Path) -> None:
    config = json.dumps(BASE)[:-1] + ', "\\ud800x": 1}'
    result = run_check(tmp_path, config)
    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stdout and "unknown key '\\ud800x' is ignored" in result.stdout


def test_check_fifo_does_not_hang(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "cc_slurm_adapter", "check", "-config",
                             str(fifo)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "not a regular file (a FIFO)" in result.stderr


def test_check_decodes_the_jwt_and_never_prints_it(tmp_path: Path) -> None:
    import time

    token = jwt({**GOOD, "exp": int(time.time()) - 3600})  # the command reads the real clock
    result = run_check(tmp_path, {**BASE, "ccRestJwt": token,
                                  "ccRestUrl": "https://adm:Zq7@cc.example.org"})
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "warning: ccRestJwt expired at " in out
    assert "note: ccRestJwt is a JWT for user 'ccslurm'" in out
    assert "(cc-backend https://***@cc.example.org," in out
    assert token not in out and SIGNATURE not in out and "Zq7" not in out


def test_check_warns_about_suspicious_host_patterns(tmp_path: Path) -> None:
    result = run_check(tmp_path, {**BASE, "ignoreHosts": "login", "gpuPciAddrs": {
        ".*": ["0000:01:00.0"], "^gpu[0-9]+$": ["0000:01:00.0"]}})
    assert result.returncode == 0, result.stderr
    assert ("warning: key 'ignoreHosts': 'login' is not anchored with ^...$, so it matches "
            "every host name that contains a match") in result.stdout
    assert ("warning: key 'gpuPciAddrs': '.*' matches every host name (even an empty one): it "
            "matches every host, so later entries are never used") in result.stdout
    assert "'^gpu[0-9]+$'" not in result.stdout
