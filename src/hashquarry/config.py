"""Configuration: one TOML file plus HASHQUARRY_* environment overrides, validated at start.

Environment variables override the file with `__` between sections, e.g.
`HASHQUARRY_NODE__URL=http://127.0.0.1:8332` or `HASHQUARRY_POOL__ADDRESS=...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class _Section(BaseModel):
    """A config section: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ConfigError(Exception):
    """A configuration value is missing or wrong; the message names the key and the reason."""


class NodeConfig(_Section):
    url: str = Field("http://127.0.0.1:8332", description="JSON-RPC URL of the coin node")
    user: str = ""
    password: str = ""
    zmq_hashblock: str | None = Field(None, description="ZMQ endpoint publishing hashblock")
    poll_interval: float = Field(2.0, gt=0, le=60, description="tip polling, seconds")
    template_refresh: float = Field(30.0, gt=0, le=3600, description="new-transaction refresh")
    rpc_timeout: float = Field(10.0, gt=0, le=300)
    rpc_retries: int = Field(3, ge=0, le=20)
    static_template: Path | None = Field(
        None, description="benchmarks only: serve this getblocktemplate JSON instead"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v


class PoolConfig(_Section):
    coin: str = Field("bitcoin", pattern=r"^[a-z][a-z0-9-]{1,31}$", description="f2pool name")
    network: str = Field("main", description="main, test, regtest, signet or bcoin-regtest")
    address: str = Field(..., description="payout address the coinbase pays")
    tag: str = Field("/hashquarry/", max_length=40, description="pool tag in the coinbase")
    extranonce2_size: int = Field(8, ge=2, le=16)
    extranonce1_prefix: int = Field(
        0, ge=0, le=255, description="first byte of every extranonce1 (one per front end)"
    )
    recent_jobs: int = Field(16, ge=2, le=256, description="jobs kept per block for late shares")

    @field_validator("network")
    @classmethod
    def _network(cls, v: str) -> str:
        from hashquarry.chain.address import AddressError, network

        try:
            network(v)
        except AddressError as exc:
            raise ValueError(str(exc)) from exc
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str, info: ValidationInfo) -> str:
        from hashquarry.chain.address import AddressError, address_to_script

        net = info.data.get("network")
        if net is None:  # the network is wrong and already reported
            return v
        try:
            address_to_script(v, net)
        except AddressError as exc:
            raise ValueError(str(exc)) from exc
        return v

    @field_validator("tag")
    @classmethod
    def _tag(cls, v: str) -> str:
        if len(v.encode()) > 40:
            raise ValueError("must be at most 40 bytes in UTF-8")
        return v


class PortConfig(_Section):
    port: int = Field(..., ge=0, le=65535)
    difficulty: float = Field(..., gt=0, description="start difficulty for miners on this port")
    host: str = "0.0.0.0"


class VardiffConfig(_Section):
    target_interval: float = Field(10.0, gt=0, le=3600, description="seconds between shares")
    retarget_window: float = Field(60.0, gt=0, le=86400, description="seconds between retargets")
    variance: float = Field(0.3, ge=0, lt=1, description="no change within this fraction")
    min_difficulty: float = Field(1e-6, gt=0)
    max_difficulty: float = Field(1e15, gt=0)

    @model_validator(mode="after")
    def _range(self) -> VardiffConfig:
        if self.min_difficulty > self.max_difficulty:
            raise ValueError("min_difficulty must not exceed max_difficulty")
        return self


class DefenceConfig(_Section):
    max_line_bytes: int = Field(16 * 1024, ge=256, le=1 << 20)
    max_buffer_bytes: int = Field(64 * 1024, ge=1024, le=1 << 24)
    idle_timeout: float = Field(600.0, gt=0, description="no message for this long: disconnect")
    auth_timeout: float = Field(30.0, gt=0, description="not authorized within: disconnect")
    max_connections_per_ip: int = Field(1000, ge=1)
    ban_seconds: float = Field(600.0, ge=0)
    ban_min_count: int = Field(20, ge=1, description="messages judged before a ban is possible")
    ban_invalid_ratio: float = Field(0.5, gt=0, le=1, description="bad/total that bans an IP")


class StratumConfig(_Section):
    ports: list[PortConfig] = Field(default_factory=lambda: [PortConfig(port=3333, difficulty=1.0)])
    version_mask: int = Field(0x1FFFE000, ge=0, le=0xFFFFFFFF, description="BIP 320 bits")
    vardiff: VardiffConfig = Field(default_factory=VardiffConfig)
    defences: DefenceConfig = Field(default_factory=DefenceConfig)
    session_resume_seconds: float = Field(600.0, ge=0)
    send_threads: int = Field(
        2, ge=0, le=64, description="threads writing job broadcasts; 0 = the event loop's own"
    )

    @field_validator("version_mask", mode="before")
    @classmethod
    def _mask(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return int(v, 16)
            except ValueError:
                raise ValueError("must be a hex string like '1fffe000' or an integer") from None
        return v

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[PortConfig]) -> list[PortConfig]:
        if not v:
            raise ValueError("at least one port is needed")
        seen = [p.port for p in v if p.port]
        if len(seen) != len(set(seen)):
            raise ValueError("ports must be distinct")
        return v


class AccountingConfig(_Section):
    enabled: bool = Field(True, description="durable share log, statistics and payouts")
    scheme: str = Field("pplns", pattern="^(pplns|pps|fpps|prop|solo)$")
    fee_bps: int = Field(100, ge=0, le=10_000, description="pool fee in basis points")
    pplns_n: float = Field(2.0, gt=0, le=1e12, description="window = N x network difficulty")
    maturity: int = Field(100, ge=1, le=10_000, description="confirmations to mature")
    commit_interval_ms: float = Field(2.0, gt=0, le=1000, description="share log group commit")
    flush_interval: float = Field(1.0, gt=0, le=60, description="aggregates to the store")
    segment_bytes: int = Field(64 << 20, ge=1 << 16, description="share log segment size")
    retention_days: float = Field(30.0, gt=0, description="keep share log segments this long")
    offline_after: float = Field(600.0, gt=0, description="a worker is offline after this")
    shift_span: float = Field(
        0.0, ge=0, description="difficulty per Bitminter shift; 0 = network difficulty"
    )
    keep_shares_days: float = Field(3.0, gt=0, description="share rows kept for PPLNS")
    tracker_interval: float = Field(5.0, gt=0, le=600, description="block confirmations poll")


class PayoutsConfig(_Section):
    enabled: bool = Field(True, description="pay balances automatically through the wallet")
    interval: float = Field(3600.0, gt=0, description="seconds between automatic payouts")
    fee_policy: str = Field("pool", pattern="^(pool|deducted)$", description="who pays the tip")
    minconf: int = Field(1, ge=0, le=1000, description="wallet coins used need this many")
    confirmations: int = Field(1, ge=1, le=1000, description="a payout counts as confirmed")
    address_threshold: int = Field(
        1_000_000, ge=1, description="threshold for address-mode miners, base units"
    )
    settle_after: float | None = Field(
        None,
        ge=0,
        description="seconds before an unanswered sendmany is judged not paid "
        "(default: 10 RPC timeouts, at least 600)",
    )


class AccountsConfig(_Section):
    require_registration: bool = Field(
        False, description="only mining users created with `hashquarry user add` may mine"
    )
    allow_address_mode: bool = Field(
        True, description="miners may use a payout address as their user name"
    )


class ApiConfig(_Section):
    enabled: bool = Field(True, description="serve the HTTP APIs next to the pool")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    rate: float = Field(50.0, gt=0, description="requests per second per key and per IP")
    burst: float = Field(100.0, ge=1, description="requests allowed at once before 429")
    price_url: str | None = Field(
        None, description="SiaMining market: an HTTP JSON price source (none: 503)"
    )


class StoreConfig(_Section):
    url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite+aiosqlite in the data directory"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")
        return v


class MetricsConfig(_Section):
    port: int | None = Field(None, ge=0, le=65535, description="Prometheus /metrics port")
    host: str = "127.0.0.1"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HASHQUARRY_", env_nested_delimiter="__", extra="forbid"
    )

    node: NodeConfig = Field(default_factory=NodeConfig)
    pool: PoolConfig
    stratum: StratumConfig = Field(default_factory=StratumConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    accounting: AccountingConfig = Field(default_factory=AccountingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    payouts: PayoutsConfig = Field(default_factory=PayoutsConfig)
    accounts: AccountsConfig = Field(default_factory=AccountsConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    data_dir: Path = Path("data")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _settle_after(self) -> Settings:
        after = self.payouts.settle_after
        if after is not None and after < self.node.rpc_timeout:
            # Shorter than one RPC timeout, an unanswered sendmany the node is still
            # carrying out would be reversed and paid a second time.
            raise ValueError(
                f"payouts.settle_after ({after:g} s) must be at least node.rpc_timeout "
                f"({self.node.rpc_timeout:g} s)"
            )
        return self

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return v.upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then the environment, then the file.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (if any), apply environment overrides, validate everything.

    Raises ConfigError with one line per bad key.
    """
    cls: type[Settings] = Settings
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        cls = type(
            "FileSettings",
            (Settings,),
            {"model_config": {**Settings.model_config, "toml_file": path}},
        )
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
    except (ValueError, OSError) as exc:  # a TOML syntax error surfaces here
        raise ConfigError(f"cannot read config {path}: {exc}") from None
