"""docker-compose.yml as the compose client reads it: services, health checks, volumes, env."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
HOW_TO_INSTALL = (
    "no docker compose client: run `bash scripts/ensure-test-services.sh` "
    "(installs Debian's docker-compose), or install the compose plugin"
)
REQUIRED = {
    "POSTGRES_PASSWORD": "pg-secret",
    "CALLTRACKER_SECRET_KEY": "k" * 40,
    "CALLTRACKER_PUBLIC_URL": "https://calls.example.com",
    "CALLTRACKER_AMI_SECRET": "amisecret",
}


def compose_command() -> list[str] | None:
    """The v2 plugin (`docker compose`), else the v1 `docker-compose`; None when neither runs."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def run_config(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    assert command is not None, HOW_TO_INSTALL
    env_file = tmp_path / "compose.env"  # never the developer's own .env
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    args = [*command, "--env-file", str(env_file), "-f", str(COMPOSE), "config"]
    if command[0] == "docker":
        args += ["--format", "json"]
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=60,
    )


def schema_lite(env: dict[str, str]) -> dict[str, Any]:
    """No client: the raw YAML with ${VAR}, ${VAR:-default} and ${VAR:?error} resolved."""

    def resolve(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(arg)
        return arg

    text = re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", resolve, COMPOSE.read_text())
    config: dict[str, Any] = yaml.safe_load(text.replace("$$", "$"))
    return config


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if compose_command() is None:
        # Still check the file, by our own reading of it; test_compose_client_is_installed
        # fails meanwhile, so this is never silently weaker.
        return schema_lite(REQUIRED)
    done = run_config(REQUIRED, tmp_path_factory.mktemp("compose"))
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = (
        json.loads(done.stdout)
        if done.stdout.lstrip().startswith("{")
        else yaml.safe_load(done.stdout)
    )
    return parsed


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Volume name (or host path) by the path it is mounted at."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        out[target] = source
    return out


def settings_variables() -> set[str]:
    source = (ROOT / "calltracker" / "settings.py").read_text()
    return {f"CALLTRACKER_{name}" for name in re.findall(r'r\.get\(\s*"(\w+)"', source)}


def test_compose_client_is_installed() -> None:
    assert compose_command() is not None, HOW_TO_INSTALL


def test_compose_runs_calltracker_postgres_redis_and_asterisk(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {"calltracker", "postgres", "redis", "asterisk"}
    assert set(config["volumes"]) >= {"pgdata", "redisdata", "recordings", "asterisk_recordings"}


def test_every_service_has_a_health_check(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    probe = " ".join(config["services"]["calltracker"]["healthcheck"]["test"])
    assert "/healthz" in probe


def test_calltracker_serves_many_workers_after_its_dependencies(config: dict[str, Any]) -> None:
    app = config["services"]["calltracker"]
    command = app["command"] if isinstance(app["command"], list) else app["command"].split()
    assert command[:2] == ["calltracker", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert int(command[command.index("--workers") + 1]) > 1
    assert "build" in app
    depends = app["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"


def test_calltracker_env_points_at_the_other_services(config: dict[str, Any]) -> None:
    env = env_of(config["services"]["calltracker"])
    assert env["CALLTRACKER_DATABASE_URL"] == (
        "postgresql://calltracker:pg-secret@postgres:5432/calltracker"
    )
    assert env["CALLTRACKER_REDIS_URL"].startswith("redis://redis:6379/")
    assert env["CALLTRACKER_AMI_HOST"] == "asterisk"
    assert env["CALLTRACKER_AMI_SECRET"] == "amisecret"
    assert env["CALLTRACKER_SECRET_KEY"] == "k" * 40
    pg = env_of(config["services"]["postgres"])
    assert pg["POSTGRES_PASSWORD"] == "pg-secret"
    # Only variables calltracker reads: a typo here would be silently ignored.
    assert set(env) <= settings_variables(), set(env) - settings_variables()


def test_recordings_are_kept_and_asterisks_are_mounted_where_asterisk_names_them(
    config: dict[str, Any],
) -> None:
    app, pbx = config["services"]["calltracker"], config["services"]["asterisk"]
    env = env_of(app)
    assert mounts(app)[env["CALLTRACKER_RECORDINGS_DIR"]] == "recordings"
    assert mounts(config["services"]["postgres"])["/var/lib/postgresql/data"] == "pgdata"
    # extensions.conf records below this folder and reports the full path over AMI; with
    # the same mount point in both containers, that path is valid in calltracker as it is.
    dialplan = (ROOT / "asterisk_conf" / "extensions.conf").read_text()
    recordings_dir = re.search(r"^RECORDINGS_DIR = (\S+)", dialplan, re.M)
    assert recordings_dir is not None
    shared = [t for t, src in mounts(pbx).items() if src == "asterisk_recordings"]
    assert len(shared) == 1 and recordings_dir.group(1).startswith(shared[0] + "/")
    assert mounts(app)[shared[0]] == "asterisk_recordings"
    assert env["CALLTRACKER_ASTERISK_RECORDINGS_DIR"] == ""
    assert mounts(pbx)["/config"].endswith("asterisk_conf")


def test_a_missing_secret_stops_compose_with_a_hint(tmp_path: Path) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != "CALLTRACKER_AMI_SECRET"}
    if compose_command() is None:
        with pytest.raises(ValueError, match="CALLTRACKER_AMI_SECRET"):
            schema_lite(env)
        return
    done = run_config(env, tmp_path)
    assert done.returncode != 0
    assert "set CALLTRACKER_AMI_SECRET in .env" in done.stderr


def test_readme_documents_every_setting_and_the_example_env_names_only_real_ones() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(v for v in settings_variables() if f"`{v}`" not in readme)
    assert not missing, f"README.md's settings table lacks {missing}"
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^(CALLTRACKER_\w+)=", example, re.M))
    assert named and named <= settings_variables() | {"CALLTRACKER_HTTP_PORT"}


def test_the_pbx_is_asterisk_22_running_the_repos_own_asterisk_conf(
    config: dict[str, Any],
) -> None:
    pbx = config["services"]["asterisk"]
    # The series tests/asterisk runs asterisk_conf/ against: 22, or a 22.x release.
    assert re.fullmatch(r"[\w./-]+:22(\.\d+)*([_-][\w.-]+)?", pbx["image"]), pbx["image"]
    assert mounts(pbx)["/config"].endswith("asterisk_conf")
    script = " ".join(pbx["command"]) if isinstance(pbx["command"], list) else pbx["command"]
    assert "cp /config/*.conf /etc/asterisk/" in script  # every file, cdr_custom.conf too
    assert (ROOT / "asterisk_conf" / "cdr_custom.conf").is_file()
