"""The secrets of the docker compose stack (``.env``): what each must look like, and fresh values.

Every service of ``docker-compose.yml`` waits for the one-shot ``secrets-check`` service, which
runs ``mediamon secrets check``: a missing or malformed secret stops the stack at once with one
line naming the variable and the command that makes a good one, instead of a service that stalls
silently (Kibana refuses an encryption key under 32 characters; Airflow cannot start with a
Fernet key that is not one).  ``mediamon secrets generate`` prints a complete set for ``.env``.

Pure functions over a mapping of variable -> value: the command reads the environment (or an
env file) at the edge.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
from dataclasses import dataclass
from typing import Callable, Mapping

_ALNUM = string.ascii_letters + string.digits
_PASSWORD_RE = re.compile(r"^[A-Za-z0-9]+$")
PLACEHOLDERS = frozenset({"changeme", "change-me", "secret", "password"})


@dataclass(frozen=True)
class SecretSpec:
    name: str
    kind: str           # password | key | fernet
    min_length: int
    why: str            # who needs it, in a few words

    def generate(self) -> str:
        if self.kind == "fernet":
            return fernet_key()
        if self.kind == "password":
            return "".join(secrets.choice(_ALNUM) for _ in range(max(self.min_length, 24)))
        return secrets.token_urlsafe(max(self.min_length, 48))[: max(self.min_length, 48)]

    def problem(self, value: str | None) -> str | None:
        """What is wrong with ``value`` (None when it is fine)."""
        if value is None or not value.strip():
            return "is not set"
        if value.strip().lower() in PLACEHOLDERS:
            return f"is still the placeholder {value.strip()!r}"
        if self.kind == "fernet":
            return None if is_fernet_key(value) else "is not a Fernet key (url-safe base64 of 32 bytes, 44 characters)"
        if len(value) < self.min_length:
            return f"has {len(value)} characters, {self.why} needs at least {self.min_length}"
        if self.kind == "password" and not _PASSWORD_RE.match(value):
            return "must be letters and digits only (it is embedded in JSON and in a database URL)"
        return None


# Forms: Kibana's config schema requires xpack.encryptedSavedObjects.encryptionKey of >= 32
# characters; Airflow's [core] fernet_key must be a cryptography Fernet key; Elasticsearch
# refuses passwords under 6 characters (we ask for 16, generated ones have 24).
SECRETS: tuple[SecretSpec, ...] = (
    SecretSpec("ELASTIC_PASSWORD", "password", 16, "the elastic superuser"),
    SecretSpec("KIBANA_PASSWORD", "password", 16, "the kibana_system user"),
    SecretSpec("MEDIAMON_WRITER_PASSWORD", "password", 16, "the mediamon_writer user"),
    SecretSpec("KIBANA_ENCRYPTION_KEY", "key", 32, "Kibana's xpack.encryptedSavedObjects.encryptionKey"),
    SecretSpec("POSTGRES_PASSWORD", "password", 16, "Airflow's metadata database"),
    SecretSpec("AIRFLOW_FERNET_KEY", "fernet", 44, "Airflow's [core] fernet_key"),
    SecretSpec("AIRFLOW_JWT_SECRET", "key", 32, "Airflow's [api_auth] jwt_secret"),
    SecretSpec("AIRFLOW_API_SECRET_KEY", "key", 32, "Airflow's [api] secret_key"),
    SecretSpec("AIRFLOW_ADMIN_PASSWORD", "password", 12, "the Airflow admin user"),
)
BY_NAME: dict[str, SecretSpec] = {s.name: s for s in SECRETS}


def fernet_key() -> str:
    """A Fernet key (what ``cryptography.fernet.Fernet.generate_key()`` returns), without cryptography."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def is_fernet_key(value: str) -> bool:
    value = value.strip()
    if len(value) != 44 or not re.fullmatch(r"[A-Za-z0-9_-]{43}=", value):
        return False
    try:
        return len(base64.urlsafe_b64decode(value.encode("ascii"))) == 32
    except (binascii.Error, ValueError):
        return False


def generate_command(name: str) -> str:
    return f"mediamon secrets generate --only {name}"


def check(env: Mapping[str, str | None], specs: tuple[SecretSpec, ...] = SECRETS) -> list[str]:
    """One line per bad secret: the variable, what is wrong, how to generate a good one."""
    lines = []
    for spec in specs:
        why = spec.problem(env.get(spec.name))
        if why:
            lines.append(f"{spec.name} {why}: generate one with `{generate_command(spec.name)}` "
                         f"and put it in .env")
    return lines


def generate(names: list[str] | None = None, *, gen: Callable[[SecretSpec], str] | None = None) -> list[str]:
    """``NAME=value`` lines with fresh values for ``names`` (default: every secret)."""
    specs = [BY_NAME[n] for n in names] if names else list(SECRETS)
    return [f"{s.name}={(gen or SecretSpec.generate)(s)}" for s in specs]
