"""docker-compose.yml, Dockerfile, .env.example (offline: parsed and cross-checked, not run)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}; "$${VAR}" is an escaped shell variable
VAR_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def test_compose_has_the_whole_stack():
    expected = {"secrets-check", "certs", "es01", "kibana", "mediamon-setup", "kibana-setup", "mailpit",
                "postgres", "airflow-init",
                "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
    assert expected <= set(SERVICES)
    cmds = {name: SERVICES[name].get("command") for name in SERVICES}
    assert cmds["airflow-apiserver"] == "api-server" and cmds["airflow-dag-processor"] == "dag-processor"
    assert cmds["airflow-scheduler"] == "scheduler" and cmds["airflow-triggerer"] == "triggerer"
    assert " ".join(cmds["mediamon-setup"]) == "mediamon setup --no-kibana"
    assert " ".join(cmds["kibana-setup"]).startswith("mediamon setup")
    assert " ".join(cmds["secrets-check"]) == "mediamon secrets check"


def test_every_variable_is_in_env_example_and_no_secret_is_committed():
    env = env_example()
    used = {m.group(1) for m in VAR_RE.finditer(COMPOSE_TEXT)}
    missing = sorted(v for v in used if v not in env)
    assert not missing, f"add to .env.example: {missing}"
    unused = sorted(set(env) - used)
    assert not unused, f"unused in docker-compose.yml: {unused}"
    for key in ("ELASTIC_PASSWORD", "KIBANA_PASSWORD", "MEDIAMON_WRITER_PASSWORD", "POSTGRES_PASSWORD",
                "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_ADMIN_PASSWORD", "KIBANA_ENCRYPTION_KEY",
                "AIRFLOW_API_SECRET_KEY"):
        assert env[key] == "changeme", key
        assert f"${{{key}}}" in COMPOSE_TEXT, f"{key} must come from .env without a default"
    assert not (ROOT / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()


def test_images_builds_volumes_and_dependencies_exist():
    volumes = set(COMPOSE.get("volumes") or {})
    for name, svc in SERVICES.items():
        assert "image" in svc or "build" in svc, name
        if "image" in svc:
            assert ":" in svc["image"], f"{name}: pin a tag"
        if "build" in svc:
            ctx = svc["build"] if isinstance(svc["build"], str) else svc["build"].get("context", ".")
            dockerfile = "Dockerfile" if isinstance(svc["build"], str) else svc["build"].get("dockerfile", "Dockerfile")
            assert (ROOT / ctx / dockerfile).is_file(), name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES and dep != name, (name, dep)
            assert cond["condition"] in ("service_healthy", "service_completed_successfully", "service_started")
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{name} waits for {dep} to be healthy: give it a healthcheck"
        for v in svc.get("volumes") or []:
            src = v.split(":")[0]
            if src.startswith("."):
                assert (ROOT / src).exists(), f"{name}: {src} does not exist"
            else:
                assert src in volumes, f"{name}: volume {src} not declared"
        one_shot = str(svc.get("restart", "")).startswith(("no", "on-failure"))
        if not one_shot and name not in ("certs",):
            assert "healthcheck" in svc, f"{name}: long-running service without a healthcheck"


def test_dependency_graph_is_acyclic_and_ordered():
    deps = {n: set((s.get("depends_on") or {})) for n, s in SERVICES.items()}
    order: list[str] = []
    while deps:
        ready = sorted(n for n, d in deps.items() if not d - set(order))
        assert ready, f"cycle among {sorted(deps)}"
        order += ready
        for n in ready:
            del deps[n]
    assert order.index("es01") < order.index("kibana") < order.index("mediamon-setup") < order.index("airflow-scheduler")


def test_security_and_tls_are_on():
    es = SERVICES["es01"]["environment"]
    assert es["xpack.security.enabled"] == "true" and es["xpack.security.http.ssl.enabled"] == "true"
    airflow_env = SERVICES["airflow-scheduler"]["environment"]
    assert airflow_env["MEDIAMON_ELASTICSEARCH_URL"].startswith("https://")
    assert airflow_env["MEDIAMON_ELASTICSEARCH_USERNAME"] == "mediamon_writer", "the pipeline is not superuser"
    assert airflow_env["MEDIAMON_ELASTICSEARCH_CA_CERTS"]
    assert all(p.startswith("127.0.0.1:") for s in SERVICES.values() for p in s.get("ports", []))
    setup_script = (ROOT / "docker" / "certs.sh").read_text(encoding="utf-8")
    assert "_security/role/mediamon_writer" in setup_script and "kibana_system/_password" in setup_script
    assert '"cluster\\": []' in setup_script or '\\"cluster\\": []' in setup_script


def test_dags_mounted_and_settings_point_at_existing_services():
    common = SERVICES["airflow-scheduler"]
    assert any(v.startswith("./dags:") for v in common["volumes"])
    env = common["environment"]
    assert env["MEDIAMON_SMTP_HOST"] in SERVICES
    host = re.match(r"https?://([^:/]+)", env["MEDIAMON_ELASTICSEARCH_URL"]).group(1)
    assert host in SERVICES
    kib = re.match(r"https?://([^:/]+)", SERVICES["kibana-setup"]["environment"]["MEDIAMON_KIBANA_URL"]).group(1)
    assert kib in SERVICES
    from pipeline.settings import Settings

    from pipeline.stack_secrets import BY_NAME

    fields = set(Settings.model_fields)
    for svc in (s for s in SERVICES.values() if "build" in s):  # containers that run mediamon
        for key in (svc.get("environment") or {}):
            if key.startswith("MEDIAMON_") and key not in BY_NAME:  # .env secrets checked by secrets-check
                assert key[len("MEDIAMON_"):].lower() in fields, f"{key} is not a Settings field"


def test_dockerfile_installs_cpu_torch_then_the_project():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    torch = text.index("torch==2.13.0")
    assert "download.pytorch.org/whl/cpu" in text
    assert torch < text.index("/opt/mediamon\n") or torch < text.rindex("pip install")
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}", text, re.M)
    for src in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M):
        for part in src.split():
            assert (ROOT / part).exists(), part
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored and ".git" in ignored


@pytest.mark.skipif(not shutil.which("docker"), reason="docker client not installed")
def test_docker_compose_config_validates(tmp_path):
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("docker compose plugin not installed: " + (probe.stderr or probe.stdout).strip()[:100])
    env = tmp_path / ".env"
    env.write_text((ROOT / ".env.example").read_text(encoding="utf-8"), encoding="utf-8")
    r = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "--env-file", str(env),
                        "config", "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
