"""The production stack's defects of issue 17, each pinned against the official reference's form.

References compared (read with the project's reference search, November 2026):
* Elastic's docker-compose for a secured cluster: elastic/elasticsearch
  ``docs/reference/setup/install/docker/docker-compose.yml`` (commit 122855a9, Elastic Stack 9.x docs);
* Airflow's ``airflow-core/docs/howto/docker-compose/docker-compose.yaml`` (apache/airflow, commit
  00a1c46d, the Airflow 3 CeleryExecutor file);
* Airflow's configuration reference ``airflow-core/src/airflow/config_templates/config.yml`` of
  the installed apache-airflow 3.3.2 (``[api] secret_key``);
* Kibana's config schema: elastic/kibana ``encrypted_saved_objects/server/config.ts``
  (``encryptionKey: schema.string({ minLength: 32 })``).
Static: the compose file is parsed, the scripts are read and linted (shellcheck); nothing of
it runs here (no Docker engine).
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from pipeline import stack_secrets

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
SCRIPTS = sorted([*(ROOT / "docker").glob("*.sh"), *(ROOT / "scripts").glob("*.sh"), ROOT / ".ci" / "run"])
CERTS_SH = (ROOT / "docker" / "certs.sh").read_text(encoding="utf-8")
INIT_SH = (ROOT / "docker" / "airflow-init.sh").read_text(encoding="utf-8")
AIRFLOW_SERVICES = [n for n in SERVICES if n.startswith("airflow-") and n != "airflow-init"]
ES_HOME = "/usr/share/elasticsearch"


def _deps(name: str) -> set[str]:
    """Every service ``name`` waits for, transitively."""
    out: set[str] = set()
    todo = list(SERVICES[name].get("depends_on") or {})
    while todo:
        d = todo.pop()
        if d not in out:
            out.add(d)
            todo += list(SERVICES[d].get("depends_on") or {})
    return out


# --- 1. certs ---------------------------------------------------------------------------------------

def test_certs_uses_the_references_layout_under_es_home():
    """Elastic's reference runs certutil from $ES_HOME with ``config/certs/...`` paths and no
    ``working_dir``: the certutil wrapper changes to $ES_HOME before Java starts, so relative
    paths from any other working directory put ``ca.zip`` in /usr/share/elasticsearch."""
    certs = SERVICES["certs"]
    assert "working_dir" not in certs
    assert certs["command"] == ["bash", "/usr/local/bin/mediamon-certs.sh"]
    assert "./docker/certs.sh:/usr/local/bin/mediamon-certs.sh:ro" in certs["volumes"]
    assert f"certs:{ES_HOME}/config/certs" in certs["volumes"]
    assert re.search(r'^cd "\$ES_HOME"$', CERTS_SH, re.M) and f"ES_HOME=${{ES_HOME:-{ES_HOME}}}" in CERTS_SH
    assert re.search(r"^CERTS=config/certs$", CERTS_SH, re.M)
    # every file argument of certutil and every unzip target is under config/certs
    calls = re.findall(r'"\$CERTUTIL" (ca|cert) ([^\n]*(?:\\\n[^\n]*)*)', CERTS_SH)
    assert [c for c, _ in calls] == ["ca", "cert"]
    for _, args in calls:
        for flag, path in re.findall(r"(-out|--in|--ca-cert|--ca-key) (\S+)", args):
            assert path.startswith('"$CERTS/'), (flag, path)
    for target in re.findall(r"unzip -q -o \S+ -d (\S+)", CERTS_SH):
        assert target == '"$CERTS"'
    # what es01 and the healthchecks read is where the script writes
    assert certs["healthcheck"]["test"][1] == f"[ -f {ES_HOME}/config/certs/es01/es01.crt ]"
    es = SERVICES["es01"]["environment"]
    assert es["xpack.security.http.ssl.certificate"] == "certs/es01/es01.crt"  # relative to $ES_HOME/config


def test_certs_is_safe_to_rerun():
    """certutil refuses to overwrite its ``-out`` file, so a re-run (or a run after an
    interrupted one) must skip what exists and remove a leftover zip before generating."""
    for crt, zipname in (("ca/ca.crt", "ca.zip"), ("es01/es01.crt", "certs.zip")):
        guard = CERTS_SH.index(f'if [ ! -f "$CERTS/{crt}" ]; then')
        rm = CERTS_SH.index(f'rm -f "$CERTS/{zipname}"', guard)
        gen = CERTS_SH.index(f'-out "$CERTS/{zipname}"', rm)
        assert guard < rm < gen < CERTS_SH.index("fi", gen)
    assert "set -euo pipefail" in CERTS_SH


# --- 2. writable volumes ----------------------------------------------------------------------------

def _writable_mounts() -> dict[str, str]:
    common = SERVICES["airflow-scheduler"]["volumes"]
    named = set(COMPOSE["volumes"])
    out = {}
    for v in common:
        src, dst, *mode = v.split(":")
        if src in named and "ro" not in mode:
            out[src] = dst
    return out


def test_every_writable_volume_path_exists_in_the_image_with_group_0_write():
    """Airflow's image convention (any uid, group 0): the containers run as ${AIRFLOW_UID}:0, so
    each mount target must exist in the image, owned by group 0 with group write -- otherwise
    Docker creates it root-owned 755 and the tasks get PermissionError."""
    mounts = _writable_mounts()
    assert set(mounts) == {"model-cache", "mediamon-data", "airflow-logs"}
    assert SERVICES["airflow-scheduler"]["user"] == "${AIRFLOW_UID:-50000}:0"
    run = re.search(r"^USER root\nRUN (mkdir -p [^\n]*(?:\\\n[^\n]*)*)\nUSER airflow$", DOCKERFILE, re.M)
    assert run, "create the volume paths as root, then switch back to the airflow user"
    cmd = run.group(1)
    for dst in mounts.values():
        if dst == "/opt/airflow/logs":
            continue  # created by the apache/airflow base image
        assert re.search(rf"mkdir -p [^&]*{re.escape(dst)}", cmd), dst
        assert re.search(rf"chown -R airflow:0 [^&]*{re.escape(dst)}", cmd), dst
        assert re.search(rf"chmod -R g\+rwX [^&]*{re.escape(dst)}", cmd), dst
    env = dict(re.findall(r"^\s+(MEDIAMON_DATA_DIR|HF_HOME)=(\S+)", DOCKERFILE, re.M))
    assert env == {"MEDIAMON_DATA_DIR": mounts["mediamon-data"], "HF_HOME": mounts["model-cache"]}


def test_airflow_init_fixes_existing_volumes_as_the_reference_does():
    """The reference's airflow-init runs as ``user: "0:0"`` and chowns the shared folders to
    ``${AIRFLOW_UID}:0``; volumes created before the image had the paths are root-owned."""
    init = SERVICES["airflow-init"]
    assert init["user"] == "0:0" and init["entrypoint"] == "/bin/bash"
    assert init["command"] == ["/opt/mediamon/docker/airflow-init.sh"]
    assert "COPY --chown=airflow:root docker /opt/mediamon/docker" in DOCKERFILE
    assert init["environment"]["AIRFLOW_UID"] == "${AIRFLOW_UID:-50000}"
    assert set(_writable_mounts().values()) <= set(re.search(r"WRITABLE=\(([^)]*)\)", INIT_SH).group(1).split())
    assert 'chown -R "${AIRFLOW_UID}:0" "${WRITABLE[@]}"' in INIT_SH
    assert "/entrypoint airflow version" in INIT_SH  # migrates + creates the user (entrypoint variables)
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert "airflow pools set mediamon_fetch" in INIT_SH and "airflow pools set mediamon_translate" in INIT_SH


# --- scripts: files, linted ---------------------------------------------------------------------------

def test_no_inline_shell_scripts_in_compose():
    """Shell steps live in docker/*.sh (linted below), not in YAML block scalars."""
    for name, svc in SERVICES.items():
        cmd = svc.get("command")
        parts = cmd if isinstance(cmd, list) else [cmd or ""]
        assert not any("\n" in str(p) for p in parts), f"{name}: move the script to docker/"
    for script in SCRIPTS:
        assert script.read_text().startswith("#!/usr/bin/env bash\n"), script


def test_shell_scripts_pass_shellcheck():
    exe = shutil.which("shellcheck")
    if exe is None:
        if __import__("os").environ.get("CI") == "true":
            pytest.fail("shellcheck is missing in CI: .ci/run installs it (apt-get install shellcheck)")
        pytest.skip("shellcheck not installed (apt-get install shellcheck); CI runs this")
    assert SCRIPTS
    r = subprocess.run([exe, "--shell=bash", "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# --- 3. secrets -----------------------------------------------------------------------------------------

def test_secrets_check_service_guards_every_secret_and_everything_waits_for_it():
    svc = SERVICES["secrets-check"]
    assert svc["command"] == ["mediamon", "secrets", "check"] and svc["restart"] == "no"
    env = svc["environment"]
    assert {k for k in env if k != "CONNECTION_CHECK_MAX_COUNT"} == set(stack_secrets.BY_NAME)
    for name in stack_secrets.BY_NAME:
        assert env[name] == f"${{{name}}}", f"{name} must come from .env, no default"
    for name in SERVICES:
        if name not in ("secrets-check", "mailpit"):
            assert "secrets-check" in _deps(name) | {name}, f"{name} starts before the secrets are checked"


def test_secret_forms_match_kibana_and_airflow():
    good = dict(line.split("=", 1) for line in stack_secrets.generate())
    assert set(good) == set(stack_secrets.BY_NAME) and stack_secrets.check(good) == []
    bad_cases = {
        "KIBANA_ENCRYPTION_KEY": "k" * 31,           # Kibana: minLength 32
        "AIRFLOW_FERNET_KEY": "changeme",            # not a Fernet key
        "AIRFLOW_JWT_SECRET": "",                    # missing
        "ELASTIC_PASSWORD": "abc\"def1234567890",    # breaks the JSON the certs script sends
    }
    for name, value in bad_cases.items():
        lines = stack_secrets.check({**good, name: value})
        assert len(lines) == 1 and lines[0].startswith(f"{name} ")
        assert f"`mediamon secrets generate --only {name}`" in lines[0] and "\n" not in lines[0]
    assert len(stack_secrets.check({})) == len(stack_secrets.SECRETS)
    # Fernet: url-safe base64 of exactly 32 bytes (43 characters and "=")
    assert not stack_secrets.is_fernet_key(base64.urlsafe_b64encode(b"x" * 31).decode())
    assert not stack_secrets.is_fernet_key("A" * 43 + "=" + "A")


def test_generated_fernet_key_is_accepted_by_cryptography():
    fernet = pytest.importorskip("cryptography.fernet")  # Airflow's own dependency
    key = stack_secrets.fernet_key()
    f = fernet.Fernet(key)
    assert f.decrypt(f.encrypt(b"x")) == b"x"


def test_secrets_commands_work_in_the_project_venv(tmp_path):
    mediamon = [sys.executable, "-m", "pipeline.cli"]
    gen = subprocess.run([*mediamon, "secrets", "generate"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert gen.returncode == 0, gen.stderr
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text() + gen.stdout)
    ok = subprocess.run([*mediamon, "secrets", "check", "--env-file", str(env_file)], capture_output=True,
                        text=True, cwd=ROOT, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*mediamon, "secrets", "check", "--env-file", str(ROOT / ".env.example")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 1
    assert len(bad.stderr.strip().splitlines()) == len(stack_secrets.SECRETS)
    assert "AIRFLOW_FERNET_KEY is still the placeholder 'changeme'" in bad.stderr
    assert "cryptography" not in (ROOT / ".env.example").read_text()  # the old one-liner needed it


# --- 4. live task logs ------------------------------------------------------------------------------------

def test_api_secret_key_is_shared_by_every_airflow_container():
    """Airflow's ``[api] secret_key`` signs the api-server's requests for task logs to the
    workers: unset, every container draws its own random key and live logs answer 403."""
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        env = SERVICES[name]["environment"]
        assert env["AIRFLOW__API__SECRET_KEY"] == "${AIRFLOW_API_SECRET_KEY}", name
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "${AIRFLOW_JWT_SECRET}", name
    assert stack_secrets.BY_NAME["AIRFLOW_API_SECRET_KEY"].min_length >= 32


# --- 5. DAG retries on every allowed Airflow ----------------------------------------------------------

def test_retry_backoff_multiplier_is_valid_on_every_allowed_airflow():
    """``retry_exponential_backoff`` is a bool on Airflow 3.1 and a float multiplier on 3.3 (the
    version of the image and the tests): the floor must exclude the versions that reject 2.0."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for deps in meta["project"]["optional-dependencies"].values() for d in deps
            if re.match(r"apache-airflow\s*[><=]", d)]
    assert pins and all(re.search(r">=\s*3\.3\b", p) for p in pins), pins
    assert re.search(r"^ARG AIRFLOW_VERSION=3\.3\.\d+$", DOCKERFILE, re.M)
    for dag in ("mediamon_feeds.py", "mediamon_digest.py"):
        text = (ROOT / "dags" / dag).read_text()
        assert re.search(r'"retry_exponential_backoff": 2\.0,', text), dag


# --- 6. the smaller ones -----------------------------------------------------------------------------------

def test_one_shot_mediamon_services_do_not_wait_for_the_metadata_db():
    """The image's entrypoint waits for the metadata DB before any command; the reference's
    airflow-cli sets ``CONNECTION_CHECK_MAX_COUNT: "0"`` where no DB is needed."""
    for name in ("secrets-check", "mediamon-setup", "kibana-setup"):
        svc = SERVICES[name]
        assert svc["environment"].get("CONNECTION_CHECK_MAX_COUNT") == "0" or "postgres" in _deps(name), name


def test_a_failed_kibana_import_does_not_keep_ingestion_down():
    for name in AIRFLOW_SERVICES:
        deps = _deps(name)
        assert "kibana" not in deps and "kibana-setup" not in deps, f"{name} waits for Kibana"
        assert "mediamon-setup" in deps, f"{name} must wait for the Elasticsearch templates"
    setup = SERVICES["mediamon-setup"]
    assert "--no-kibana" in setup["command"] and "MEDIAMON_KIBANA_URL" not in setup["environment"]
    ks = SERVICES["kibana-setup"]
    assert ks["environment"]["MEDIAMON_KIBANA_URL"] == "http://kibana:5601"
    assert str(ks["restart"]).startswith("on-failure")


def test_query_docs_say_proximity_is_unordered_here_and_ordered_in_kibana():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    note = readme[readme.index("**Proximity differs from Kibana.**"):][:600]
    assert "unordered" in note and "order-sensitive" in note and "N + 2" in note
