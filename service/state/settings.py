"""The service's settings: one class, read from ``GACD_*`` environment variables. Torch-free.

The API and the workers read the same settings, so that both agree on Redis, the artifact store and
the queue. Outside development the settings refuse unsafe values (no API keys, a wildcard CORS origin).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gacd_core.datarefs import parse_roots

MiB = 1 << 20


class SettingsError(ValueError):
    """Settings that cannot work (the message names the variable)."""


class Settings(BaseSettings):
    """Every knob of the API and the workers (environment variable = ``GACD_`` + upper-case name)."""

    model_config = SettingsConfigDict(env_prefix="GACD_", extra="ignore", validate_default=True)

    env: Literal["development", "production"] = Field(
        "development", description="production refuses unsafe settings (no keys, wildcard CORS)"
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="job store, events, leases and Celery broker")
    artifact_root: Path = Field(
        Path("var/artifacts"), description="shared directory of uploads, checkpoints and job outputs"
    )
    data_root: Path = Field(Path("data"), description="the workers' root of the built-in datasets")
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="roots of the datasets jobs name by reference (imagefolder, shards), each tenant's under "
        "<root>/<tenant>/; separated by ':' or a JSON list. Empty: no data by reference",
    )
    api_keys: str = Field(
        "", description="comma-separated KEY=TENANT pairs (or a JSON object {key: tenant})", repr=False
    )
    api_keys_file: Path | None = Field(None, description="a file of 'TENANT KEY' lines or a JSON {key: tenant}")
    max_upload_bytes: int = Field(2048 * MiB, ge=1, description="largest accepted upload (413 beyond)")
    max_json_bytes: int = Field(1 * MiB, ge=1024, description="largest accepted JSON body (413 beyond)")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="allowed browser origins; empty: CORS off"
    )
    queue: str = Field("gacd", description="the Celery queue jobs go to")
    worker_device: str = Field("auto", description="the device a worker runs jobs on: auto, cpu, cuda, cuda:N")
    worker_stale_seconds: float = Field(
        60.0, gt=0, description="a worker unseen for this long no longer counts for /readyz and /metrics"
    )
    heartbeat_seconds: float = Field(5.0, gt=0, description="how often a worker and a running job report in")
    lease_seconds: float = Field(60.0, gt=0, description="a running job's lease; renewed by the heartbeat")
    max_attempts: int = Field(3, ge=1, le=100, description="a job whose worker is lost this often fails")
    events_max: int = Field(10_000, ge=100, description="events kept per job (the oldest are trimmed)")
    tenant_max_active_jobs: int = Field(
        8, ge=1, description="unfinished (queued or running) jobs a tenant may have at once (429 beyond)"
    )
    tenant_jobs_per_minute: int = Field(
        30, ge=1, description="jobs a tenant may submit in any 60 seconds (429 with Retry-After beyond)"
    )
    broker_visibility_timeout: float = Field(
        12 * 3600.0,
        gt=0,
        description="seconds before the broker hands an unacknowledged message out again (the lease stops duplicates)",
    )
    broker_transport_options: dict[str, Any] = Field(
        default_factory=dict,
        description="more kombu Redis transport options, as JSON (e.g. unacked_restore_interval)",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip()
            if not v:
                return []
            if v.startswith("["):
                return json.loads(v)
            return [o.strip() for o in v.split(",") if o.strip()]
        return v

    @field_validator("data_roots", mode="before")
    @classmethod
    def _roots(cls, v: object) -> object:
        if isinstance(v, str):
            try:
                return parse_roots(v)
            except ValueError as exc:
                raise SettingsError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _safe(self) -> Settings:
        if self.env == "production":
            if not self.keys():
                raise SettingsError("GACD_API_KEYS or GACD_API_KEYS_FILE: production needs at least one API key")
            if "*" in self.cors_origins:
                raise SettingsError("GACD_CORS_ORIGINS: a wildcard origin is refused in production")
        if self.lease_seconds <= 2 * self.heartbeat_seconds:
            raise SettingsError("GACD_LEASE_SECONDS must exceed twice GACD_HEARTBEAT_SECONDS")
        return self

    def keys(self) -> dict[str, str]:
        """API key -> tenant, from ``api_keys`` and ``api_keys_file``."""
        out: dict[str, str] = {}
        out.update(_parse_keys(self.api_keys, "GACD_API_KEYS"))
        if self.api_keys_file is not None:
            try:
                text = self.api_keys_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise SettingsError(f"GACD_API_KEYS_FILE: cannot read {self.api_keys_file}: {exc}") from None
            out.update(_parse_keys_file(text))
        return out


def _parse_keys(text: str, where: str) -> dict[str, str]:
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        data = json.loads(text)
        if not isinstance(data, dict):
            raise SettingsError(f"{where}: expected a JSON object of key -> tenant")
        pairs = [(str(k), str(v)) for k, v in data.items()]
    else:
        pairs = []
        for item in text.split(","):
            key, sep, tenant = item.strip().partition("=")
            if not sep or not key or not tenant:
                raise SettingsError(f"{where}: expected KEY=TENANT pairs separated by commas")
            pairs.append((key.strip(), tenant.strip()))
    return _checked(pairs, where)


def _parse_keys_file(text: str) -> dict[str, str]:
    if text.lstrip().startswith("{"):
        return _parse_keys(text, "GACD_API_KEYS_FILE")
    pairs = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise SettingsError(f"GACD_API_KEYS_FILE line {n}: expected 'TENANT KEY'")
        pairs.append((parts[1], parts[0]))
    return _checked(pairs, "GACD_API_KEYS_FILE")


def _checked(pairs: list[tuple[str, str]], where: str) -> dict[str, str]:
    out = {}
    for key, tenant in pairs:
        if len(key) < 16:
            raise SettingsError(f"{where}: API keys must be at least 16 characters")
        if not tenant.replace("-", "").replace("_", "").isalnum() or len(tenant) > 64:
            raise SettingsError(f"{where}: tenant names are letters, digits, '-' and '_' (at most 64)")
        out[key] = tenant
    return out


@lru_cache
def get_settings() -> Settings:
    """The process's settings (read once)."""
    return Settings()
