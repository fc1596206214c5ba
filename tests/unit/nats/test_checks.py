"""``check``'s NATS part: unreadable or world-readable key files, bad TLS files."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cc_slurm_adapter.config import Config
from cc_slurm_adapter.nats.checks import nats_report


def cfg(**over: Any) -> Config:
    return dataclasses.replace(Config(), **{"nats_server": "n", **over})


def test_clean_config_has_nothing_to_say() -> None:
    assert nats_report(cfg()) == ([], [])


def test_missing_and_open_secret_files(tmp_path: Path) -> None:
    seed = tmp_path / "user.nk"
    seed.write_text("SUAXXXX\n")
    seed.chmod(0o644)
    warnings, _ = nats_report(cfg(nats_nkey_seed_file=str(seed),
                                  nats_creds_file=str(tmp_path / "none.creds")))
    assert any("natsCredsFile" in w and "No such file" in w for w in warnings), warnings
    assert any("natsNKeySeedFile" in w and "mode 644" in w for w in warnings), warnings
    assert all("SUAXXXX" not in w for w in warnings)
    seed.chmod(0o600)
    assert nats_report(cfg(nats_nkey_seed_file=str(seed))) == ([], [])


def test_bad_tls_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    warnings, _ = nats_report(cfg(nats_tls_ca_file=str(ca)))
    assert len(warnings) == 1 and warnings[0].startswith("NATS TLS files cannot be loaded")


def test_nats_only_note_and_password_without_user() -> None:
    warnings, notes = nats_report(cfg(cc_rest_submit_jobs=False, nats_password="pw"))
    assert warnings == ["natsPassword is set but natsUser is empty"]
    assert any("core NATS subscription" in n for n in notes)


def test_check_command_prints_them(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({
        "ccRestUrl": "https://cc.example.org", "ccRestJwt": "a.b.c", "natsServer": "n",
        "natsCredsFile": str(tmp_path / "missing.creds")}))
    path.chmod(0o600)
    result = subprocess.run([sys.executable, "-m", "cc_slurm_adapter", "check", "-config",
                             str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert "warning: natsCredsFile" in result.stdout, result.stdout + result.stderr
    assert "NATS on" in result.stdout
