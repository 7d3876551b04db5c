"""Configuration: every setting, its default and its meaning, read from the environment here only.

The README's configuration table lists the same settings; a test keeps the two in step.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message says which and how to fix it."""


def _text(value: str) -> str:
    return value.strip()


def _int(value: str) -> int:
    return int(value.strip())


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    parse: Callable[[str], Any] = _text


SETTINGS: tuple[Setting, ...] = (
    Setting("PORTAL_ENV", "development",
            "`development`, `testing` or `production`. Production refuses to start "
            "without `SECRET_KEY`, `DATABASE_URL` and `REDIS_URL` and marks cookies "
            "`Secure`."),
    Setting("SECRET_KEY", "",
            "Signs sessions and tokens. Empty in development: a random key is created "
            "once and kept in `instance/secret_key`. Required in production."),
    Setting("DATABASE_URL", "",
            "PostgreSQL URL the portal connects with (`postgresql://user:pass@host/db`), "
            "as a role that owns no table and cannot bypass row-level security. Empty: an "
            "embedded PostgreSQL server keeps its data under `instance/postgres`."),
    Setting("MIGRATION_DATABASE_URL", "",
            "PostgreSQL URL of the role that owns the schema, for migrations. Empty: "
            "`DATABASE_URL` (or the embedded server's owner role)."),
    Setting("REDIS_URL", "",
            "Redis URL (`redis://host:6379/0` or `unix:///path/redis.sock`). Empty: an "
            "embedded Redis server keeps its data in `instance/redis.db`."),
    Setting("STRIPE_SECRET_KEY", "",
            "Stripe secret key (`sk_test_…`/`sk_live_…`). Empty: no real Stripe account "
            "is used and the portal runs in test mode."),
    Setting("STRIPE_PUBLISHABLE_KEY", "", "Stripe publishable key for the Payment Element."),
    Setting("STRIPE_WEBHOOK_SECRET", "",
            "Signing secret of the Stripe webhook endpoint (`whsec_…`). Empty without "
            "`STRIPE_SECRET_KEY`: the simulator's development secret, `whsec_` followed by "
            "the hex HMAC-SHA256 of `stripe-simulator-webhooks` keyed with `SECRET_KEY`."),
    Setting("STRIPE_API_BASE", "",
            "Address of the Stripe API. Empty: `https://api.stripe.com` with a secret key; "
            "without one, the built-in Stripe simulator, started on a free local port "
            "([Stripe](docs/stripe.md))."),
    Setting("STRIPE_TIMEOUT_SECONDS", "20",
            "Longest wait for one answer from the Stripe API, in seconds.", float),
    Setting("STRIPE_MAX_NETWORK_RETRIES", "2",
            "Retries of a Stripe request after a timeout, a lost connection or a server "
            "error; every request carries an idempotency key, so a retry never charges "
            "twice.", _int),
    Setting("STRIPE_SIMULATOR_FEE_BASIS_POINTS", "150",
            "Simulator: percentage part of the card fee, in hundredths of a percent (150: "
            "1.5 %, Stripe's rate for standard European cards).", _int),
    Setting("STRIPE_SIMULATOR_FEE_FIXED", "25",
            "Simulator: fixed part of the card fee, in minor units of the charge's currency "
            "(25: €0.25).", _int),
    Setting("STRIPE_SIMULATOR_DISPUTE_FEE", "2000",
            "Simulator: fee withdrawn with a disputed amount, in minor units (2000: €20).",
            _int),
    Setting("STRIPE_SIMULATOR_WEBHOOK_URL", "",
            "Simulator: where events are posted. Empty: `PUBLIC_BASE_URL` followed by "
            "`/webhooks/stripe`."),
    Setting("STRIPE_SIMULATOR_WEBHOOK_ATTEMPTS", "5",
            "Simulator: delivery attempts per event before it is given up.", _int),
    Setting("STRIPE_SIMULATOR_WEBHOOK_BACKOFF_MS", "1000",
            "Simulator: wait before the second delivery attempt of an event, in "
            "milliseconds; it doubles before each further attempt.", _int),
    Setting("PORTAL_NAME", "Amply", "The portal's name in pages and exports."),
    Setting("PUBLIC_BASE_URL", "http://127.0.0.1:5000",
            "The address the public reaches the portal at; used in exports, emails and "
            "verification instructions."),
    Setting("INSTANCE_PATH", "",
            "Folder for local state (embedded databases, uploads, keys). Empty: "
            "`instance/` beside the `portal` package."),
    Setting("MAIL_SERVER", "",
            "SMTP host for outgoing email. Empty: messages are written to the outbox "
            "folder instead (and listed at `/dev/outbox` in debug mode)."),
    Setting("MAIL_PORT", "587", "SMTP port.", _int),
    Setting("MAIL_USE_TLS", "true", "Use STARTTLS with the SMTP server.", _bool),
    Setting("MAIL_USERNAME", "", "SMTP user name (empty: no login)."),
    Setting("MAIL_PASSWORD", "", "SMTP password."),
    Setting("MAIL_FROM", "Amply <no-reply@amply.invalid>", "Sender of outgoing email."),
    Setting("MAIL_OUTBOX", "", "Outbox folder when no SMTP host is set. Empty: "
            "`instance/outbox`."),
    Setting("SESSION_IDLE_MINUTES", "30", "Sign out after this long without a request.",
            _int),
    Setting("SESSION_LIFETIME_HOURS", "12",
            "Sign out this long after signing in, whatever the activity.", _int),
    Setting("RECEIPTS_FOLDER", "",
            "Where uploaded expense receipts are kept (named by their SHA-256). Empty: "
            "`instance/receipts`."),
    Setting("RECEIPT_MAX_BYTES", "10485760", "Largest receipt upload, in bytes (10 MiB).",
            _int),
    Setting("DATABASE_POOL_SIZE", "10",
            "Connections each app process keeps open; as many more may open under load.",
            _int),
    Setting("LEDGER_MAX_AMOUNT", "99999999999999",
            "Largest absolute amount of one entry, in minor units (at most 2^53 − 1, "
            "the largest integer every JSON reader keeps exact).", _int),
    Setting("DONATION_MIN_AMOUNT", "100",
            "Smallest donation, in minor units of the chosen currency (100: €1.00).", _int),
    Setting("DONATION_MAX_AMOUNT", "99999999",
            "Largest donation, in minor units, fees covered included (99999999: "
            "€999,999.99, Stripe's largest card charge).", _int),
    Setting("DONATION_PRESET_AMOUNTS", "1000,2500,5000,10000",
            "The amounts offered on donation pages, in minor units, separated by commas."),
    Setting("DONATION_RATE_LIMIT", "10 per minute;60 per hour",
            "How many donation forms and test-card payments one network address may send "
            "(Flask-Limiter notation, counted in Redis)."),
    Setting("DONATION_FEE_BASIS_POINTS", "",
            "Percentage part of the card fee that \"cover the fees\" adds, in hundredths of a "
            "percent. Empty: `STRIPE_SIMULATOR_FEE_BASIS_POINTS`."),
    Setting("DONATION_FEE_FIXED", "",
            "Fixed part of the card fee that \"cover the fees\" adds, in minor units. Empty: "
            "`STRIPE_SIMULATOR_FEE_FIXED`."),
    Setting("CHECKPOINT_KEY_FILE", "",
            "The Ed25519 key that signs checkpoints (made by `flask checkpoints keygen`; keep "
            "it secret and backed up). Empty: `instance/checkpoint-signing.key`."),
    Setting("CHECKPOINT_KEY_NAME", "",
            "The signing key's name, the prefix of every checkpoint's origin line. Empty: "
            "host and path of `PUBLIC_BASE_URL`."),
    Setting("CHECKPOINT_HOUR", "0",
            "UTC hour after which the job worker makes the day's checkpoint (0-23).", _int),
    Setting("JOBS_IN_PROCESS", "true",
            "Run background jobs (checkpoints, large reports) in a thread of each app "
            "process. Set false when `flask jobs worker` runs on its own.", _bool),
    Setting("REPORTS_FOLDER", "",
            "Where audit reports built in the background are kept until downloaded. "
            "Empty: `instance/reports`."),
    Setting("TRUSTED_PROXIES", "0",
            "Reverse proxies in front of the portal whose X-Forwarded-For/-Proto/-Host "
            "headers are trusted (0: none). Rate limits and IP binding use the client's "
            "address they report.", _int),
    Setting("LOG_LEVEL", "INFO", "Python logging level of the app's own loggers."),
    Setting("SQL_ECHO", "false", "Log every SQL statement (development aid).", _bool),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


ENVIRONMENTS = ("development", "testing", "production")
MAX_EXACT_JSON_INTEGER = 2**53 - 1


def load_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from ``environ`` (the process environment by default)."""
    source = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = source.get(setting.name, setting.default)
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.name}: {exc}") from exc
    return values


def check_settings(values: Mapping[str, Any]) -> None:
    """Refuse combinations that cannot work, with a message that says what to set."""
    if values["PORTAL_ENV"] not in ENVIRONMENTS:
        raise ConfigError(f"PORTAL_ENV must be one of {', '.join(ENVIRONMENTS)}, "
                          f"not {values['PORTAL_ENV']!r}")
    if values["PORTAL_ENV"] == "production":
        missing = [name for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")
                   if not values[name]]
        if missing:
            raise ConfigError(f"production needs {', '.join(missing)} to be set "
                              "(embedded servers and generated keys are for development)")
    if values["DATABASE_POOL_SIZE"] < 1:
        raise ConfigError("DATABASE_POOL_SIZE must be at least 1")
    if not 0 <= values["TRUSTED_PROXIES"] <= 5:
        raise ConfigError("TRUSTED_PROXIES must be between 0 and 5")
    if not 0 <= values["CHECKPOINT_HOUR"] <= 23:
        raise ConfigError("CHECKPOINT_HOUR must be an hour of the day, 0 to 23")
    if not 0 < values["LEDGER_MAX_AMOUNT"] <= MAX_EXACT_JSON_INTEGER:
        raise ConfigError(f"LEDGER_MAX_AMOUNT must be between 1 and {MAX_EXACT_JSON_INTEGER}")


def sqlalchemy_url(database_url: str) -> str:
    """Point any PostgreSQL URL at the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    if database_url.startswith("postgresql+psycopg://"):
        return database_url
    raise ConfigError(
        "DATABASE_URL must be a PostgreSQL URL such as postgresql://user:pass@host/db"
    )


def secret_key_for(settings: Mapping[str, Any], instance_path: Path) -> str:
    """Return the configured secret key, or a development key kept in the instance folder."""
    configured = str(settings["SECRET_KEY"])
    if configured:
        return configured
    if settings["PORTAL_ENV"] == "production":
        raise ConfigError("SECRET_KEY must be set in production (a long random string).")
    key_file = instance_path / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


def describe(name: str) -> Setting:
    return _BY_NAME[name]
