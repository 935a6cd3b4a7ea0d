"""Settings: environment + overrides, one-line validation errors, aiokafka kwargs, no leaked secrets."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from streams.settings import Settings, SettingsError, chdb_path, load_settings, redact_dsn


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MOODWIRE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env file


def test_defaults() -> None:
    s = load_settings()
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert (s.topic_input, s.topic_dlq, s.topic_scored) == ("text-events", "text-events-dlq", "scored-events")
    assert s.effective_clickhouse_dsn == f"chdb://{(Path.cwd() / 'data' / 'clickhouse').resolve()}"
    assert s.kafka_client_kwargs() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_environment_then_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOODWIRE_BATCH_SIZE", "128")
    monkeypatch.setenv("MOODWIRE_TOPIC_INPUT", "raw")
    monkeypatch.setenv("MOODWIRE_KAFKA_BOOTSTRAP_SERVERS", "a:1, b:2")
    s = load_settings(batch_size=None, topic_input="cli-topic")
    assert (s.batch_size, s.topic_input, s.kafka_bootstrap_servers) == (128, "cli-topic", "a:1,b:2")


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MOODWIRE_BATCH_MAX_WAIT_MS=750\n")
    assert load_settings().batch_max_wait_ms == 750


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"clickhouse_dsn": "mysql://h/db"}, "MOODWIRE_CLICKHOUSE_DSN: unsupported scheme 'mysql'"),
        ({"clickhouse_dsn": "localhost:8123"}, "unsupported scheme '(none)'"),
        ({"clickhouse_dsn": "chdb://"}, "chdb:// needs a data directory"),
        ({"clickhouse_dsn": "http://:8123/db"}, "has no host"),
        ({"clickhouse_dsn": "http://h:port/db"}, "bad port"),
        (
            {"kafka_bootstrap_servers": "localhost"},
            "MOODWIRE_KAFKA_BOOTSTRAP_SERVERS: 'localhost' is not host:port",
        ),
        ({"kafka_bootstrap_servers": "h:70000"}, "is not host:port"),
        ({"kafka_security_protocol": "TLS"}, "MOODWIRE_KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_security_protocol": "SASL_SSL"}, "MOODWIRE_KAFKA_SASL_MECHANISM is required"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN"},
            "MOODWIRE_KAFKA_SASL_USERNAME",
        ),
        (
            {"kafka_ssl_cafile": "/nonexistent/ca.pem"},
            "MOODWIRE_KAFKA_SSL_CAFILE=/nonexistent/ca.pem: no such file",
        ),
        ({"batch_size": 0}, "MOODWIRE_BATCH_SIZE"),
        ({"kafka_max_partition_fetch_bytes": 10}, "MOODWIRE_KAFKA_MAX_PARTITION_FETCH_BYTES"),
        ({"topic_input": "bad topic!"}, "not a valid Kafka topic name"),
        ({"triton_url": "http://h:8001"}, "MOODWIRE_TRITON_URL"),
        ({"languages": "zh"}, "MOODWIRE_LANGUAGES"),  # English is always served: it takes every other lang
        ({"languages": "en,fr"}, "MOODWIRE_LANGUAGES"),
    ],
)
def test_invalid_settings_give_one_line(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(**overrides)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_http_dsn_accepted_and_password_never_shown() -> None:
    s = load_settings(
        clickhouse_dsn="https://alice:s3cret@ch.example:8443/analytics",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="bob",
        kafka_sasl_password="hunter2",
    )
    assert s.effective_clickhouse_dsn == "https://alice:s3cret@ch.example:8443/analytics"
    for shown in (repr(s), str(s)):
        assert "s3cret" not in shown and "hunter2" not in shown
        assert "https://alice:***@ch.example:8443/analytics" in shown
    kwargs = s.kafka_client_kwargs()
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("bob", "hunter2")
    assert "ssl_context" not in kwargs


def test_redact_and_chdb_path(tmp_path: Path) -> None:
    assert redact_dsn("http://u:p@h:8123/db") == "http://u:***@h:8123/db"
    assert redact_dsn("chdb:///x") == "chdb:///x"
    assert chdb_path("chdb:///var/lib/mw") == Path("/var/lib/mw")
    assert chdb_path("chdb://data/ch") == tmp_path / "data" / "ch"
    assert chdb_path("http://h:8123") is None


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_builds_ssl_context_from_files(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    s = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
        kafka_ssl_cafile=cert,
        kafka_ssl_certfile=cert,
        kafka_ssl_keyfile=key,
    )
    ctx = s.kafka_client_kwargs()["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "localhost"),),)]


def test_tls_with_a_non_certificate_file_is_one_line_error(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=bogus)
    with pytest.raises(SettingsError, match="cannot load Kafka TLS files"):
        s.kafka_client_kwargs()
