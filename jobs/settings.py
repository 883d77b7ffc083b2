"""One settings object: environment variables, over configs/defaults.yaml, over built-in defaults."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from platformdirs import user_data_path
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

BROKER_SCHEMES = ("redis://", "rediss://", "unix://")


def default_data_dir() -> Path:
    """The user's data folder (e.g. ~/.local/share/reelbatch): every folder sees the same batches."""
    return user_data_path("reelbatch")


def _config_defaults() -> dict[str, Any]:
    text = resources.files("reelbatch.configs").joinpath("defaults.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


class _YamlDefaults(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _config_defaults()


class Settings(BaseSettings):
    # every non-secret default can be overridden as REELBATCH_<NAME>, e.g. REELBATCH_SWEEP_EVERY_S
    # a .env file in the working folder is read too (the README's example.env works outside compose)
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_prefix="REELBATCH_",
                                      env_file=".env", env_file_encoding="utf-8")

    # secrets: read by workers only, never written anywhere
    oxen_api_key: SecretStr | None = Field(None, validation_alias="OXEN_API_KEY")
    aimlapi_key: SecretStr | None = Field(None, validation_alias=AliasChoices("AIMLAPI_KEY", "AIML_API_KEY"))
    simulator_key: SecretStr | None = Field(None, validation_alias="REELBATCH_SIMULATOR_KEY")
    fal_key: SecretStr | None = Field(None, validation_alias="FAL_KEY")
    oxen_base_url: str = Field("https://hub.oxen.ai", validation_alias="OXEN_BASE_URL")
    aimlapi_base_url: str = Field("https://api.aimlapi.com", validation_alias="AIMLAPI_BASE_URL")
    simulator_url: str = Field("http://127.0.0.1:8765", validation_alias="REELBATCH_SIMULATOR_URL")
    fal_queue_url: str = Field("https://queue.fal.run", validation_alias="FAL_QUEUE_URL")
    fal_api_url: str = Field("https://api.fal.ai", validation_alias="FAL_API_URL")   # platform API
    fal_rest_url: str = Field("https://rest.fal.ai", validation_alias="FAL_REST_URL")  # storage uploads
    broker_url: str | None = Field(None, validation_alias="REELBATCH_BROKER_URL")
    data_dir: Path = Field(default_factory=default_data_dir, validation_alias="REELBATCH_DATA_DIR")
    # Apprise URLs (space or comma separated); they carry webhook tokens: a secret, never stored
    notify: SecretStr | None = Field(None, validation_alias="REELBATCH_NOTIFY")

    max_items: int = 100_000
    max_manifest_bytes: int = 5_000_000
    max_items_from_bytes: int = 50_000_000
    max_data_uri_bytes: int = 10_000_000
    visibility_timeout_s: int = 7200
    max_countdown_s: int = 300
    redelivery_cap: int = 5
    sweep_every_s: float = 10.0
    sweep_grace_s: float = 60.0       # how late a sent step may start before the sweeper sends it again
    task_lease_s: float = Field(30.0, gt=0)   # a running task's lease on its item, renewed a third of it
    reconcile_margin_s: float = 15.0  # a lost submit is looked for this long past the HTTP read timeout
    reconcile_resubmits: int = 2      # resubmits a reconcile that found nothing may make per item
    http_connect_timeout_s: float = 10
    http_read_timeout_s: float = 60
    http_write_timeout_s: float = 60
    http_pool_timeout_s: float = 30
    download_max_bytes: int = 2 * 1024**3
    download_chunk_bytes: int = 4 * 1024 * 1024
    download_http_hosts: list[str] = Field(default_factory=list)
    worker_concurrency: int = Field(8, ge=1)   # threads per worker process
    worker_processes: int = Field(0, ge=0)     # worker processes `run` starts; 0: one per usable core, up to 4
    worker_providers: str = ""   # the providers a worker serves (comma separated); empty: every one it has a key for
    simulator_time_scale: float = 0.004
    worker_eta_task_limit: int = 5000
    event_listener: bool = True
    provider_unreachable_s: float = Field(600.0, gt=0)   # a provider down this long pauses its batches
    no_worker_grace_s: float = 30.0   # `run` with a broker says when no worker consumed this long
    price_overrides: dict[str, float] = Field(default_factory=dict)
    progress_every_s: float = 60.0
    metrics_port: int | None = Field(None, ge=1, le=65535)   # Prometheus metrics of `run`/`scheduler`
    metrics_address: str = "127.0.0.1"   # compose's scheduler listens on 0.0.0.0 for Prometheus

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir_named(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty; expected a folder (unset it for the default)")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_is_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(BROKER_SCHEMES):
            raise ValueError("expected a Redis URL: redis://[:password@]host:port/db (or rediss://)")
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, _YamlDefaults(settings_cls))


def variable_of(field: str) -> str:
    """The environment variable a settings field is read from (the first of its aliases)."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        alias = alias.choices[0]
    return str(alias) if alias else f"REELBATCH_{field.upper()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, built on first use (never at import time)."""
    return Settings()


def settings_error(exc: ValidationError) -> str:
    """A settings error as one line naming the environment variable."""
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else "?"
    variable = name if name.isupper() else f"REELBATCH_{name.upper()}"   # an alias is the variable
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{variable}: {message} (got {error.get('input')!r})"
