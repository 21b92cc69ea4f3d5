"""Typed settings read once from CALLTRACKER_* environment variables and an optional .env."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

PREFIX = "CALLTRACKER_"
T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class Secret:
    """A string that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


@dataclass(frozen=True)
class AmiSettings:
    host: str = ""  # empty: no Asterisk configured, the listener stays off
    port: int = 5038
    username: str = "calltracker"
    secret: Secret = field(default_factory=lambda: Secret(""))
    inbound_context: str = "from-trunk"
    reconnect_max_seconds: float = 30.0
    queue_size: int = 10_000
    # How long storing one call fact may take before the listener moves on and retries it.
    sink_timeout_seconds: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///./calltracker.db"
    redis_url: Secret = field(default_factory=lambda: Secret(""))
    redis_prefix: str = "ct:"  # every key calltracker writes; lets deployments share a Redis
    host: str = "127.0.0.1"
    port: int = 8080
    secret_key: Secret = field(default_factory=lambda: Secret("dev-insecure-change-me"))
    public_url: str = "http://127.0.0.1:8080"
    trust_forwarded_for: bool = False
    visit_rate_per_minute: int = 600
    # Wrong passwords for one account within 15 minutes before its sign-in form answers 429
    # (web/login_throttle.py); a client address gets four times as many over all accounts.
    login_max_failures: int = 5
    max_body_bytes: int = 8 * 1024
    grace_seconds: int = 15 * 60
    recordings_dir: Path = Path("./recordings")
    # Where Asterisk's recordings are seen from here: "" (the paths Asterisk names), a local
    # directory (file names looked up in it), or ASTERISK_DIR=LOCAL_DIR (telephony/recordings.py).
    asterisk_recordings_dir: str = ""
    # FastAGI (telephony/agi.py): listen address for the dialplan's AGI(agi://HOST:PORT/...).
    # agi_port 0 picks a free port (tests); -1 (CALLTRACKER_AGI_PORT=off) switches it off.
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    log_level: str = "INFO"
    log_format: str = "kv"  # kv: key=value lines; json: one JSON object a line
    workers: int = 1  # web processes `calltracker serve` runs; more than one needs Redis
    # The AMI leader's Redis lock expires this long after its last renewal (renewed every
    # third of it): a standby takes over within about this long when the leader dies.
    leader_ttl_seconds: float = 5.0
    ami: AmiSettings = field(default_factory=AmiSettings)

    def __repr__(self) -> str:
        # The database URL may carry a password; everything else secret is a Secret already.
        fields = {**self.__dict__, "database_url": redact_url(self.database_url)}
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_url)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: Path | None = None
    ) -> Settings:
        """Read settings; environment variables win over the .env file."""
        values: dict[str, str] = {}
        path = env_file if env_file is not None else Path(".env")
        if environ is None and path.is_file():
            values.update(read_env_file(path))
        values.update(os.environ if environ is None else environ)
        r = _Reader(values)
        default = cls()
        ami_default = AmiSettings()
        return cls(
            database_url=r.get("DATABASE_URL", str, default.database_url),
            redis_url=Secret(r.get("REDIS_URL", str, "")),
            redis_prefix=r.get("REDIS_PREFIX", _nonempty, default.redis_prefix),
            host=r.get("HOST", str, default.host),
            port=r.get("PORT", _port, default.port),
            secret_key=Secret(r.get("SECRET_KEY", _nonempty, default.secret_key.reveal())),
            public_url=r.get("PUBLIC_URL", _url, default.public_url).rstrip("/"),
            trust_forwarded_for=r.get("TRUST_FORWARDED_FOR", _bool, default.trust_forwarded_for),
            visit_rate_per_minute=r.get(
                "VISIT_RATE_PER_MINUTE", _positive, default.visit_rate_per_minute
            ),
            login_max_failures=r.get("LOGIN_MAX_FAILURES", _positive, default.login_max_failures),
            max_body_bytes=r.get("MAX_BODY_BYTES", _positive, default.max_body_bytes),
            grace_seconds=r.get("GRACE_SECONDS", _non_negative, default.grace_seconds),
            recordings_dir=Path(r.get("RECORDINGS_DIR", str, str(default.recordings_dir))),
            asterisk_recordings_dir=r.get(
                "ASTERISK_RECORDINGS_DIR", _recordings_mapping, default.asterisk_recordings_dir
            ),
            agi_host=r.get("AGI_HOST", str, default.agi_host),
            agi_port=r.get("AGI_PORT", _agi_port, default.agi_port),
            log_level=r.get("LOG_LEVEL", _log_level, default.log_level),
            log_format=r.get("LOG_FORMAT", _log_format, default.log_format),
            workers=r.get("WORKERS", _positive, default.workers),
            leader_ttl_seconds=r.get("LEADER_TTL_SECONDS", _leader_ttl, default.leader_ttl_seconds),
            ami=AmiSettings(
                host=r.get("AMI_HOST", str, ami_default.host),
                port=r.get("AMI_PORT", _port, ami_default.port),
                username=r.get("AMI_USERNAME", str, ami_default.username),
                secret=Secret(r.get("AMI_SECRET", str, "")),
                inbound_context=r.get(
                    "AMI_INBOUND_CONTEXT", _nonempty, ami_default.inbound_context
                ),
                reconnect_max_seconds=r.get(
                    "AMI_RECONNECT_MAX_SECONDS", float, ami_default.reconnect_max_seconds
                ),
                queue_size=r.get("AMI_QUEUE_SIZE", _positive, ami_default.queue_size),
                sink_timeout_seconds=r.get(
                    "AMI_SINK_TIMEOUT_SECONDS", _positive_float, ami_default.sink_timeout_seconds
                ),
            ),
        )


class _Reader:
    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        key = PREFIX + name
        raw = self._values.get(key)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except (ValueError, TypeError) as err:
            shown = "(hidden)" if _is_secret_name(name) else repr(raw)
            raise SettingsError(f"{key}={shown} is invalid: {err}") from None


def _is_secret_name(name: str) -> bool:
    return any(word in name for word in ("SECRET", "PASSWORD", "TOKEN", "REDIS_URL"))


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("a port is a number from 1 to 65535")
    return value


def _agi_port(raw: str) -> int:
    return -1 if raw.lower() in _FALSE | {"-1"} else _port(raw)


def _positive(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number of seconds")
    return value


def parse_recordings_mapping(value: str) -> tuple[str, Path | None]:
    """CALLTRACKER_ASTERISK_RECORDINGS_DIR as (Asterisk's directory, our directory).

    "" -> ("", None): calltracker sees the files at the paths Asterisk names.
    "/mnt/rec" -> ("", /mnt/rec): the file name in that directory, whatever Asterisk's folder.
    "/var/spool/asterisk/monitor=/mnt/rec" -> the part below Asterisk's folder (date
    folders included) below ours.
    """
    value = value.strip()
    if not value:
        return "", None
    theirs, sep, ours = value.rpartition("=")
    if not sep:
        return "", Path(value)
    theirs = theirs.strip().rstrip("/")
    if not theirs.startswith("/") or not ours.strip():
        raise ValueError("use LOCAL_DIR, or ASTERISK_DIR=LOCAL_DIR with an absolute ASTERISK_DIR")
    return theirs, Path(ours.strip())


def _recordings_mapping(raw: str) -> str:
    parse_recordings_mapping(raw)
    return raw


def _non_negative(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def _nonempty(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return raw


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("must be one of 1/0, true/false, yes/no, on/off")


def _log_format(raw: str) -> str:
    value = raw.lower()
    if value not in {"kv", "json"}:
        raise ValueError("must be kv or json")
    return value


def _leader_ttl(raw: str) -> float:
    value = float(raw)
    # Below a second the renewals (every third) would race Redis round trips on a busy host.
    if not 1.0 <= value <= 60.0:
        raise ValueError("must be from 1 to 60 seconds")
    return value


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; '#' comments and surrounding quotes are allowed."""
    values: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :]
        if "=" not in stripped:
            raise SettingsError(f"{path}:{lineno}: expected KEY=VALUE")
        key, value = stripped.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def describe(settings: Settings) -> dict[str, Any]:
    """What start-up logs: everything but secrets."""
    return {
        "database": redact_url(settings.database_url),
        "pool_backend": "redis" if settings.uses_redis else "memory",
        "listen": f"{settings.host}:{settings.port}",
        "ami": f"{settings.ami.host}:{settings.ami.port}" if settings.ami.enabled else "off",
        "agi": f"{settings.agi_host}:{settings.agi_port}" if settings.agi_port >= 0 else "off",
    }
