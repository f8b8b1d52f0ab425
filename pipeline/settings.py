"""One Settings object, built at the edge (CLI, DAG task, test) and passed down.

Nothing below this module reads ``os.environ``: every stage receives the
``Settings`` it needs as an argument.  Environment variables use the
``MEDIAMON_`` prefix, e.g. ``MEDIAMON_DATA_DIR=/var/lib/mediamon``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import __version__

DEFAULT_USER_AGENT = (
    f"mediamon/{__version__} (+https://github.com/mediamon/mediamon; news monitoring feed reader)"
)


class Settings(BaseSettings):
    """Runtime configuration.  See docs/DESIGN.md "Configuration" for the contract."""

    model_config = SettingsConfigDict(env_prefix="MEDIAMON_", extra="ignore", frozen=True)

    # files
    config_dir: Path = Path("config")
    data_dir: Path = Path("data")

    # Elasticsearch (unset URL -> embedded SQLite store in data_dir)
    elasticsearch_url: str | None = None
    elasticsearch_api_key: SecretStr | None = None
    elasticsearch_username: str | None = None
    elasticsearch_password: SecretStr | None = None
    elasticsearch_ca_certs: Path | None = None
    index_prefix: str = "mediamon"

    # translation / classification
    translation_backend: Literal["transformers", "ctranslate2", "none"] = "transformers"
    translation_model: str = "Helsinki-NLP/opus-mt-ru-en"
    translation_models: dict[str, str] = Field(
        default_factory=dict,
        description="Per source language model overrides, e.g. {'uk': 'Helsinki-NLP/opus-mt-uk-en'}",
    )
    translation_device: str = "cpu"
    translation_batch_size: int = Field(default=16, ge=1, le=512)
    classifier_model: str | None = None

    # mail (unset host -> .eml files in data_dir/outbox)
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_from: str = "mediamon@localhost"
    smtp_timeout: float = 30.0

    # fetching
    allow_private_networks: bool = False
    user_agent: str = DEFAULT_USER_AGENT
    # 32: measured (docs/PERFORMANCE.md); httpx's pool is sized to it, never larger
    fetch_concurrency: int = Field(default=32, ge=1, le=512, description="requests in flight, all hosts together")
    fetch_per_host: int = Field(default=4, ge=1, le=64,
                                description="requests in flight to one host (politeness toward an outlet)")
    fetch_timeout: float = Field(default=30.0, gt=0, description="total deadline per request, seconds")
    connect_timeout: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0, description="cap on decoded body")
    max_redirects: int = Field(default=5, ge=0, le=20)
    max_items_per_feed: int = Field(default=1000, ge=1)
    backoff_base: float = Field(default=300.0, gt=0, description="first retry delay after a failure, s")
    backoff_cap: float = Field(default=6 * 3600.0, gt=0, description="longest backoff, s")
    retry_after_cap: float = Field(default=24 * 3600.0, gt=0)
    default_interval: float = Field(default=900.0, gt=0, description="poll interval, s")
    languages: tuple[str, ...] = ("ru", "en", "uk", "be")

    # alerts (pipeline/alerts/, pipeline/mail.py)
    smtp_retry_attempts: int = Field(default=3, ge=1, le=10,
                                     description="tries per email for transient SMTP errors, within one run")
    smtp_retry_wait: float = Field(default=2.0, ge=0, description="first backoff between tries, s (doubles)")
    alert_first_run_lookback: float = Field(
        default=24 * 3600.0, gt=0, description="on a rule's first run (it never queued a match) only items "
                                               "published this many seconds before the run are alerted; "
                                               "older ones are stored, not mailed")
    alert_max_items_per_email: int = Field(default=200, ge=1, description="items per email; the rest stay "
                                           "queued for the next email and are counted in this one")
    # issue 16 item 4: one flooding feed cannot fill an email nor grow the backlog without bound
    alert_max_items_per_source: int = Field(default=25, ge=1, description="stories of one source per email "
                                            "(its newest); its older pending ones are summarised as a count")

    # translation decoding (pipeline/translate)
    translation_num_beams: int | None = Field(
        default=None, ge=1, le=16,
        description="beam size for generate; unset -> the model's generation config (4 for opus-mt); 1 = greedy")

    # topic classifier (pipeline/classify; used only when classifier_model is set)
    classifier_threshold: float = Field(default=0.8, ge=0, le=1,
                                        description="P(entailment) at or above which the model adds a topic")
    classifier_device: str = "cpu"

    # Airflow DAG (dags/mediamon_feeds.py, pipeline/tasks.py)
    poll_batch_size: int = Field(default=10, ge=1, le=1000,
                                 description="feeds per mapped poll task in the mediamon_feeds DAG")

    # where the Airflow tasks of one run hand articles to each other (pipeline/staging.py):
    # unset -> data_dir/staging (one host, or a volume every worker mounts); a URL -> that object
    # store or file system (s3://bucket/prefix, gs://..., file:///mnt/shared/..., any fsspec URL),
    # so CeleryExecutor / KubernetesExecutor workers need no shared disk
    staging_url: str | None = None
    staging_conn_id: str | None = Field(
        default=None, description="Airflow connection with the credentials for staging_url "
                                  "(through airflow.sdk.ObjectStoragePath); unset -> fsspec's own lookup")
    # the embedded SQLite store (unset -> data_dir/mediamon.sqlite3)
    sqlite_path: Path | None = None

    # Kibana (`mediamon setup` imports saved objects when set; same credentials as Elasticsearch)
    kibana_url: str | None = None

    # CTranslate2 translation backend (pipeline/translate/ctranslate2.py; MEDIAMON_TRANSLATION_BACKEND=ctranslate2)
    translation_compute_type: str = Field(
        default="int8", description="CTranslate2 compute type: int8 (default), int8_float32, float32, "
                                    "int8_float16/float16 on CUDA")
    translation_threads: int = Field(default=0, ge=0, le=256,
                                     description="CTranslate2 CPU threads; 0 = the cores this process may use")

    # parsing + normalising in a process pool (pipeline/parsepool.py, used by poll.poll_async)
    parse_workers: int = Field(default=0, ge=0, le=256,
                               description="parser processes for large polls; 0 = the cores, 1 = no pool (a thread)")
    parse_pool_min_bytes: int = Field(default=1024 * 1024, ge=0,
                                      description="bytes of bodies in one poll after which the pool is used")
    parse_cpu_seconds: float = Field(default=30.0, gt=0, le=3600,
                                     description="CPU-time budget for parsing one document in a parser process; "
                                                 "past it the feed fails with that reason, the others go on")
    # run_cycle stores what polling delivered so far in batches of this many items while polling goes on
    cycle_batch_items: int = Field(default=1000, ge=1, le=1_000_000,
                                   description="items per batch stored while the poll is still running")

    # logging: one JSON object per line instead of "event key=value" (the CLI reads it at start-up)
    log_json: bool = False
    # web page (`mediamon serve`, pipeline/web): required to bind anywhere but loopback; sent as
    # HTTP Basic password (any user name) or "Authorization: Bearer <token>"
    web_token: str | None = Field(default=None, repr=False)

    @property
    def store_path(self) -> Path:
        return self.sqlite_path if self.sqlite_path is not None else self.data_dir / "mediamon.sqlite3"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def uses_elasticsearch(self) -> bool:
        return bool(self.elasticsearch_url)
