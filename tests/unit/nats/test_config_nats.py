"""Validation of the NATS keys: one clear line naming the key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cc_slurm_adapter.config import Config, parse_config
from cc_slurm_adapter.errors import ConfigError

BASE: dict[str, Any] = {"ccRestUrl": "https://cc.example.org", "ccRestJwt": "x.y.z",
                        "natsServer": "nats.example.org"}


def load(**extra: Any) -> Config:
    return parse_config(json.dumps({**BASE, **extra}), "/etc/ccsa.json").config


def error(**extra: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(**extra)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_defaults_and_good_values_load() -> None:
    assert load().nats_subject == "jobs"
    cfg = load(natsSubject="cc.jobs", natsJetStream=True, natsStreamName="CC_JOBS",
               natsStreamSubjects="cc.>, other", natsTlsCertFile="/c.pem",
               natsTlsKeyFile="/k.pem")
    assert cfg.nats_jet_stream and cfg.nats_stream_subjects == "cc.>, other"


def test_nothing_checked_without_nats() -> None:
    assert load(natsServer="", natsSubject="bad subject").nats_subject == "bad subject"


@pytest.mark.parametrize(("extra", "key", "words"), [
    ({"natsSubject": ""}, "natsSubject", "is empty"),
    ({"natsSubject": "a b"}, "natsSubject", "white space"),
    ({"natsSubject": "a..b"}, "natsSubject", "empty token"),
    ({"natsSubject": "jobs.*"}, "natsSubject", "wildcard"),
    ({"natsTlsCertFile": "/c.pem"}, "natsTlsCertFile", "natsTlsKeyFile is empty"),
    ({"natsTlsKeyFile": "/k.pem"}, "natsTlsKeyFile", "natsTlsCertFile is empty"),
    ({"natsJetStream": True, "natsStreamName": "a.b"}, "natsStreamName", "stream name"),
    ({"natsJetStream": True, "natsStreamName": ""}, "natsStreamName", "stream name"),
    ({"natsJetStream": True, "natsStreamSubjects": "a.>.b"}, "natsStreamSubjects",
     "last token"),
    ({"natsJetStream": True, "natsStreamSubjects": "other, x.*"}, "natsStreamSubjects",
     "none of them takes natsSubject 'jobs'"),
])
def test_refused(extra: dict[str, Any], key: str, words: str) -> None:
    text = error(**extra)
    assert f"key '{key}'" in text and words in text, text


def test_stream_keys_ignored_without_jetstream() -> None:
    assert load(natsStreamSubjects="other").nats_stream_subjects == "other"
