"""The one typed settings object of the streaming pipeline.

Values come from ``MOODWIRE_*`` environment variables (or a ``.env`` file),
and CLI flags override them through :func:`load_settings`.  Every other module
receives a :class:`Settings` instead of reading ``os.environ``.  Secrets (SASL
and key passwords, the password inside a ClickHouse DSN) never appear in
``repr``/logs; :func:`redact_dsn` is what logs print instead.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
DSN_SCHEMES = ("chdb", "http", "https")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message is one line naming the variable."""


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***`` (safe to log)."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def chdb_path(dsn: str) -> Path | None:
    """The data directory of a ``chdb://<dir>`` DSN (absolute), or None for http(s).

    Everything after ``chdb://`` is the directory: ``chdb:///var/lib/mw`` is
    absolute, ``chdb://data/ch`` is relative to the working directory.
    (clickhouse-connect would read ``data`` there as a host and ``ch`` as the
    database, so we resolve the path ourselves.)
    """
    if not dsn.startswith("chdb://"):
        return None
    raw = unquote(dsn[len("chdb://") :])
    return Path(raw).expanduser().resolve()


class Settings(BaseSettings):
    """Streaming pipeline settings; see ``docs/pipeline.md`` for each variable."""

    model_config = SettingsConfigDict(
        env_prefix="MOODWIRE_", env_file=".env", extra="ignore", validate_default=True, frozen=True
    )

    data_dir: Path = Field(Path("data"), description="Embedded ClickHouse data and other local state.")

    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_session_timeout_ms: int = Field(
        3_000,
        ge=1_000,
        description="Consumer group session timeout; tansu makes a join wait about half of it.",
    )
    kafka_fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        le=30_000,
        description="Longest a fetch waits at the broker for data (tansu always waits it out).",
    )
    kafka_max_partition_fetch_bytes: int = Field(
        256 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description=(
            "Most bytes one fetch takes per partition (a bigger first record still comes whole); "
            "bounds what a backlog buffers in the worker."
        ),
    )
    kafka_commit_interval_ms: int = Field(
        1_000,
        ge=10,
        le=60_000,
        description="How often acked offsets are committed (Faust broker_commit_interval).",
    )

    # Topics
    topic_input: str = "text-events"
    topic_dlq: str = "text-events-dlq"
    topic_scored: str = "scored-events"
    topic_alerts: str = "alerts"
    topic_partitions: int = Field(4, ge=1, le=1024)

    # Which agents this worker runs; all workers share one consumer group (streams.pipeline.agents)
    worker_agents: str = Field(
        "classify,store,deliver",
        pattern=r"^ *(classify|store|deliver)( *, *(classify|store|deliver))* *$",
        description="Comma-separated agents this worker runs: classify, store, deliver.",
    )
    kafka_group_id: str = Field("moodwire", min_length=1, description="Consumer group (the Faust app id).")

    # Micro-batching
    batch_size: int = Field(64, ge=1, le=10_000)
    batch_max_wait_ms: int = Field(200, ge=1, le=60_000)
    classify_in_flight: int = Field(
        3,
        ge=1,
        le=8,
        description="Micro-batches the classify agent scores at once (acks stay in take order).",
    )
    # The store agent's batches: each INSERT has a fixed cost (parts for events and every
    # aggregate view), so fewer, bigger inserts leave the cores to inference.
    store_batch_size: int = Field(2000, ge=1, le=100_000)
    store_batch_max_wait_ms: int = Field(500, ge=1, le=60_000)

    # Data masking (streams.pipeline.masking, docs/masking.md): personal data in the scored event is replaced
    # after classification and before it is produced, stored, served or sent.
    masking: Literal["off", "on"] = Field(
        "off", description="'on' masks the kinds in MOODWIRE_MASKING_KINDS."
    )
    masking_kinds: str = Field(
        "email,phone,card,iban,cn_id,ip",
        pattern=r"^ *(email|phone|card|iban|cn_id|ip)( *, *(email|phone|card|iban|cn_id|ip))* *$",
        description="Comma-separated kinds to mask: email, phone, card, iban, cn_id, ip.",
    )

    # Downstream services
    runner: Literal["triton", "local"] = Field(
        "triton", description="Where the worker classifies: Triton (MOODWIRE_TRITON_URL) or in-process ONNX."
    )
    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC host:port.")
    languages: str = Field(
        "en,zh",
        pattern=r"^ *en *(, *zh *)?$",
        description="Models the worker routes to: 'en', or 'en,zh' (text written mainly in Han "
        "characters to the Chinese model, whatever its lang; everything else to the English one).",
    )
    clickhouse_dsn: str | None = Field(
        None, description="chdb://<dir> (embedded) or http(s)://user:password@host:port/database."
    )

    # Web API, live dashboard and /metrics, served by the worker (streams.web)
    web_host: str = Field("127.0.0.1", description="Interface the worker's HTTP API listens on.")
    web_port: int = Field(6066, ge=0, le=65535, description="HTTP API port; 0 disables the web server.")
    api_token: SecretStr | None = Field(
        None, description="If set, /api/* requires 'Authorization: Bearer <token>'."
    )
    # Access (streams.web.access, docs/security.md): a non-loopback web_host needs api_token or this.
    web_allow_unauthenticated: bool = Field(
        False, description="Serve /api/* without a token on a non-loopback web_host (logged at WARNING)."
    )

    # Alerts (streams.alerts): rules file (None = the bundled defaults), evaluation period
    alerts_rules_file: Path | None = None
    alerts_interval_s: float = Field(15.0, gt=0, le=3600, description="Alert evaluation period.")
    alerts_max_lag_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Rounds wait while an unprocessed event is older than this (incomplete windows).",
    )
    alerts_enabled: bool = True
    alerts_leader_topic: str = Field(
        "moodwire-alerts-leader", description="1-partition topic whose consumer group elects the evaluator."
    )
    alerts_retry_max_backoff_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Cap of the webhook retry backoff (retries stop at a target's max_age).",
    )

    # Worker resilience: a failed batch is retried with exponential backoff up to this cap, forever.
    retry_max_backoff_s: float = Field(5.0, gt=0, le=300)
    shutdown_grace_s: float = Field(
        10.0, ge=0, le=300, description="On SIGTERM, how long batches in flight may take to finish."
    )
    # Test-only fault injection: while this file exists, ClickHouse inserts fail (see store_stage).
    fault_store_file: Path | None = None

    # -- validation ---------------------------------------------------------------------------

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("needs at least one host:port")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @field_validator("topic_input", "topic_dlq", "topic_scored", "topic_alerts", "alerts_leader_topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        # Kafka's own rule: 1-249 chars of [a-zA-Z0-9._-]
        if (
            not value
            or len(value) > 249
            or any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in value)
        ):
            raise ValueError(f"{value!r} is not a valid Kafka topic name ([a-zA-Z0-9._-], 1-249 chars)")
        return value

    @field_validator("triton_url")
    @classmethod
    def _check_triton(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if "://" in value or not sep or not host or not port.isdigit():
            raise ValueError(f"{value!r} is not host:port (the gRPC endpoint, no scheme)")
        return value

    @field_validator("clickhouse_dsn")
    @classmethod
    def _check_dsn(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if scheme not in DSN_SCHEMES:
            raise ValueError(
                f"unsupported scheme {scheme or '(none)'!r} in {redact_dsn(value)!r}: "
                "use chdb://<dir> or http(s)://user:password@host:port/database"
            )
        if scheme == "chdb":
            if not value[len("chdb://") :]:
                raise ValueError("chdb:// needs a data directory, e.g. chdb://data/clickhouse")
        else:
            parts = urlsplit(value)
            try:
                parts.port  # noqa: B018 - raises ValueError on a non-numeric port
            except ValueError:
                raise ValueError(f"bad port in {redact_dsn(value)!r}") from None
            if not parts.hostname:
                raise ValueError(f"{redact_dsn(value)!r} has no host")
        return value

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        proto = self.kafka_security_protocol
        if proto.startswith("SASL_"):
            if self.kafka_sasl_mechanism is None:
                raise ValueError(f"MOODWIRE_KAFKA_SASL_MECHANISM is required with security protocol {proto}")
            if not self.kafka_sasl_username or self.kafka_sasl_password is None:
                raise ValueError(
                    f"MOODWIRE_KAFKA_SASL_USERNAME and MOODWIRE_KAFKA_SASL_PASSWORD are required for SASL {self.kafka_sasl_mechanism}"
                )
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"MOODWIRE_{name.upper()}={path}: no such file")
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError("MOODWIRE_KAFKA_SSL_KEYFILE needs MOODWIRE_KAFKA_SSL_CERTFILE")
        return self

    # -- derived values -----------------------------------------------------------------------

    @property
    def effective_clickhouse_dsn(self) -> str:
        """The configured DSN, or the embedded engine under ``data_dir``."""
        return self.clickhouse_dsn or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def agents(self) -> frozenset[str]:
        return frozenset(a.strip() for a in self.worker_agents.split(","))

    @property
    def uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """SSL context for SSL / SASL_SSL (system CAs unless a CA file is given), else None."""
        if not self.uses_tls:
            return None
        from aiokafka.helpers import create_ssl_context

        password = self.kafka_ssl_key_password.get_secret_value() if self.kafka_ssl_key_password else None
        try:
            return create_ssl_context(
                cafile=self.kafka_ssl_cafile,
                certfile=self.kafka_ssl_certfile,
                keyfile=self.kafka_ssl_keyfile,
                password=password,
            )
        except (ssl.SSLError, OSError) as exc:
            raise SettingsError(f"cannot load Kafka TLS files: {exc}") from None

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by aiokafka producers, consumers and admin clients."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL_"):
            assert self.kafka_sasl_password is not None  # checked by _check_security
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        ssl_context = self.kafka_ssl_context()
        if ssl_context is not None:
            kwargs["ssl_context"] = ssl_context
        return kwargs

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "clickhouse_dsn" and isinstance(value, str):
                yield name, redact_dsn(value)
            else:
                yield name, value


def _one_line(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        where = f"MOODWIRE_{loc.upper()}: " if loc else ""
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"{where}{msg}")
    return "invalid settings: " + "; ".join(problems)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment with non-None ``overrides`` (CLI flags) on top.

    Raises :class:`SettingsError` with a one-line message naming each bad variable.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None
