"""The compose stack, checked without a Docker engine: docker-compose.yml, the Dockerfile, the
build context, .env.example and the scripts in docker/ (tests/test_topology.py runs the same
services as local processes)."""

from __future__ import annotations

import configparser
import fnmatch
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
import yaml
from click.testing import CliRunner
from mlflow import environment_variables as mlflow_variables
from mlflow.cli import cli as mlflow_cli

from orchestrator import cli, data, workspace
from orchestrator.sweep_file import parse_config
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKER = ROOT / "docker"
PASSWORD = "s3cr3tFromDotEnv"
"""Stands for the PostgreSQL password a user writes into .env."""
MLFLOW_PASSWORD = "mlfl0wL0ginFromDotEnv"
"""Stands for the MLflow login's password a user writes into .env."""
SECRET_KEY = "f0rmK3yFromDotEnv"
"""Stands for the key that signs the MLflow UI's forms."""

TOOL_SERVICES = ("worker", "orchestrate")
"""The services that run the orchestrate CLI."""

# ----------------------------------------------------------------------------- compose model

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


class InterpolationError(ValueError):
    """A ``${VAR:?message}`` whose variable is unset or empty."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR:?e}``.

    The forms with a colon treat an empty value as unset, as Compose does.
    """

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        value = env.get(name)
        op = match["op"] or ""
        if op.startswith(":") and value == "":
            value = None
        if value is not None:
            return value
        if op.endswith("-"):
            return match["arg"]
        if op.endswith("?"):
            raise InterpolationError(f"{name}: {match['arg']}")
        return ""

    return _VARIABLE.sub(substitute, text)


def _resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _resolve(value, env) for key, value in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a .env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def compose_env(**overrides: str) -> dict[str, str]:
    """What `cp .env.example .env` and setting the password give Compose to interpolate."""
    return {
        **read_env_file(ENV_EXAMPLE),
        "POSTGRES_PASSWORD": PASSWORD,
        "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": SECRET_KEY,
        **overrides,
    }


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml with its variables substituted (by default: as in the quick start)."""
    document = yaml.safe_load(COMPOSE.read_text())
    return _resolve(document, compose_env() if env is None else env)


def argv(service: Mapping[str, Any]) -> list[str]:
    """The command line a service runs: its entrypoint, then its command."""
    return [*service.get("entrypoint", []), *service.get("command", [])]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)


def _help(command: click.Command, *args: str) -> str:
    """``COMMAND ARGS --help`` of a click CLI, run in this process."""
    result = CliRunner().invoke(command, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def _options(args: list[str]) -> list[str]:
    return [arg for arg in args if arg.startswith("--")]


def _dockerfile(instruction: str) -> list[str]:
    """The arguments of every ``INSTRUCTION`` line of the Dockerfile (continuations joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [
        line.split(None, 1)[1].strip()
        for line in text.splitlines()
        if line.split(None, 1)[:1] == [instruction]
    ]


# ----------------------------------------------------------------------------- structure


def test_stack_has_its_services_built_from_one_image() -> None:
    services = load_compose()["services"]
    assert {"postgres", "mlflow", "dashboard", "worker", "orchestrate"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    ours = {name: s for name, s in services.items() if name != "postgres"}
    assert {"mlflow", "dashboard", *TOOL_SERVICES} <= set(ours)
    assert {s["build"] for s in ours.values()} == {"."}
    assert {s["image"] for s in ours.values()} == {"alds-imp-orchestrator:latest"}
    # The one-shot CLI is only started on request (`docker compose run --rm orchestrate ...`).
    assert services["orchestrate"]["profiles"] == ["tools"]


def test_long_running_services_have_healthchecks() -> None:
    services = load_compose()["services"]
    long_running = ("postgres", "mlflow", "dashboard")
    checks = {name: " ".join(services[name]["healthcheck"]["test"]) for name in long_running}
    assert "pg_isready" in checks["postgres"]
    assert "/health" in checks["mlflow"]
    assert "http://127.0.0.1:8080/" in checks["dashboard"]
    for name in long_running:
        assert services[name]["restart"] == "unless-stopped", name
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), name
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"{name} healthcheck", "exec")


def test_dependencies_wait_until_healthy() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            target = services[dependency]
            expected = (
                "service_healthy"
                if "healthcheck" in target
                else "service_completed_successfully"  # a one-shot set-up step
            )
            assert spec["condition"] == expected, (name, dependency)
            if expected == "service_completed_successfully":
                assert target.get("restart") == "no", dependency
    for name in TOOL_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["mlflow"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_worker_takes_nvidia_gpus_scales_and_restarts() -> None:
    worker = load_compose()["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert [d["driver"] for d in devices] == ["nvidia"]
    assert "gpu" in devices[0]["capabilities"]
    assert worker["restart"] == "on-failure"
    # --scale needs replicas that differ: no fixed name, no host port.
    assert "container_name" not in worker
    assert "ports" not in worker
    # Each replica claims a GPU of its own before the CLI starts (see the gpu-slot tests).
    assert worker["entrypoint"][0] == "gpu-slot.sh"
    assert "--device" in worker["command"]
    assert worker["command"][worker["command"].index("--device") + 1] == "cuda"
    assert worker["environment"]["WORKERS_PER_GPU"] == "1"


# ----------------------------------------------------------------------------- secrets, exposure


def test_password_comes_only_from_dot_env() -> None:
    secrets = {
        "POSTGRES_PASSWORD": PASSWORD,
        "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": SECRET_KEY,
    }
    for name in secrets:
        assert read_env_file(ENV_EXAMPLE)[name] == ""
        with pytest.raises(InterpolationError, match=name):
            load_compose(compose_env(**{name: ""}))

    resolved = load_compose()
    # Every password in the file, alone or inside a connection URL, is the one from .env.
    credentials = [
        userinfo
        for text in _strings(resolved)
        for userinfo in re.findall(r"[\w+]+://([^/@\s]+)@", text)
    ]
    assert credentials
    assert {userinfo.partition(":")[2] for userinfo in credentials} == {PASSWORD}
    for service in resolved["services"].values():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert value in secrets.values(), key

    services = resolved["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == PASSWORD
    for name in TOOL_SERVICES:
        assert f":{PASSWORD}@" in services[name]["environment"]["ORCHESTRATE_STORAGE"]
    assert f":{PASSWORD}@" in services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    for path in (DOCKERFILE, ENV_EXAMPLE, *DOCKER.rglob("*.sh"), *DOCKER.rglob("*.ini")):
        assert not any(secret in path.read_text() for secret in secrets.values()), path


def test_every_volume_of_our_image_is_a_folder_its_user_owns() -> None:
    # A named volume mounted where the image has no folder is created owned by root, where
    # the image's unprivileged user cannot write (MLflow's accounts, the artifacts).
    (run,) = [line for line in _dockerfile("RUN") if "mkdir" in line]
    made = set(run.split("mkdir -p")[1].split("&&")[0].split())
    owned = run.split("chown -R orchestrate:orchestrate")[1].split()
    volumes = set(load_compose()["volumes"])
    for name, service in load_compose()["services"].items():
        if service.get("build") != ".":
            continue
        for target, source in _mounts(service).items():
            if source in volumes:
                assert target in made, (name, target)
                assert any(
                    Path(folder) in (Path(target), *Path(target).parents) for folder in owned
                )


def test_mlflow_asks_for_a_login_that_every_tool_service_gives() -> None:
    services = load_compose()["services"]
    mlflow = services["mlflow"]
    command = argv(mlflow)
    assert command[command.index("--app-name") + 1] == "basic-auth"
    environment = mlflow["environment"]
    assert environment["MLFLOW_AUTH_ADMIN_PASSWORD"] == MLFLOW_PASSWORD
    assert environment["MLFLOW_AUTH_ADMIN_USERNAME"] == "orchestrate"
    assert environment["MLFLOW_FLASK_SERVER_SECRET_KEY"] == SECRET_KEY
    # The settings file is the repository's, and its accounts live on a volume of their own.
    mounts = _mounts(mlflow)
    assert mounts[environment["MLFLOW_AUTH_CONFIG_PATH"]] == "./docker/mlflow-auth.ini"
    settings = configparser.ConfigParser()
    settings.read(DOCKER / "mlflow-auth.ini")
    auth_db = Path(settings["mlflow"]["database_uri"].removeprefix("sqlite:///"))
    assert _volume_holding(auth_db, mounts) == "mlflow-auth"
    assert "mlflow-auth" in load_compose()["volumes"]
    for name in TOOL_SERVICES:
        given = services[name]["environment"]
        assert given["MLFLOW_TRACKING_USERNAME"] == environment["MLFLOW_AUTH_ADMIN_USERNAME"]
        assert given["MLFLOW_TRACKING_PASSWORD"] == MLFLOW_PASSWORD


def test_published_ports_are_on_loopback_and_postgres_is_not_published() -> None:
    services = load_compose()["services"]
    assert "ports" not in services["postgres"]
    assert "network_mode" not in services["postgres"]
    published = {
        name: [port.split(":") for port in service.get("ports", [])]
        for name, service in services.items()
    }
    assert published["mlflow"] == [["127.0.0.1", "5000", "5000"]]
    assert published["dashboard"] == [["127.0.0.1", "8080", "8080"]]
    assert all(host == "127.0.0.1" for ports in published.values() for host, _, _ in ports)
    # Opening them is a deliberate change of .env, not an edit of the compose file.
    opened = load_compose(compose_env(PUBLISH_ADDRESS="192.0.2.10"))["services"]
    assert opened["mlflow"]["ports"] == ["192.0.2.10:5000:5000"]
    # optuna-dashboard has no login: it stays on this machine whatever the address says.
    assert opened["dashboard"]["ports"] == ["127.0.0.1:8080:8080"]


def test_dot_env_and_local_state_stay_out_of_git_and_the_image() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        # Docker's rule: the last pattern that matches the path or a parent of it decides.
        verdict = False
        parents = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        for pattern in patterns:
            negated = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if any(fnmatch.fnmatch(p, pattern) for p in parents):
                verdict = not negated
        return verdict

    for path in (".env", ".venv/bin/python", ".git/config", ".orchestrate/checkpoints/a.pt"):
        assert ignored(path), path
    assert ignored("orchestrator/__pycache__/cli.cpython-311.pyc")
    for copy in _dockerfile("COPY"):
        sources = [arg for arg in copy.split() if not arg.startswith("--")][:-1]
        for source in sources:
            assert not ignored(source.rstrip("/")), f"COPY {source} is excluded from the context"
            assert (ROOT / source).exists(), source


# ----------------------------------------------------------------------------- the tool inside


def _tool_environment_variables() -> set[str]:
    """Every environment variable the tool's packages read (writes and setdefault excluded)."""
    pattern = re.compile(
        r"""environ\.get\(\s*["'](\w+)["']|getenv\(\s*["'](\w+)["']"""
        r"""|environ\[\s*["'](\w+)["']\s*\](?!\s*=[^=])|envvar=["'](\w+)["']"""
    )
    names = set()
    sources = [
        path
        for package in ("orchestrator", "compression", "models")
        for path in (ROOT / package).rglob("*.py")
    ]
    for path in sources:
        for groups in pattern.findall(path.read_text()):
            names.update(name for name in groups if name)
    # Slurm sets its variables in a job's environment; nobody configures them.
    return {name for name in names if not name.startswith("SLURM_")}


def test_every_variable_the_tool_reads_is_set_for_it() -> None:
    read = _tool_environment_variables()
    assert {"MLFLOW_TRACKING_URI", "ORCHESTRATE_DATA", "ORCHESTRATE_HEARTBEAT_SECONDS"} <= read
    services = load_compose()["services"]
    for name in TOOL_SERVICES:
        environment = services[name]["environment"]
        assert read <= set(environment), (name, read - set(environment))
        assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert environment["ORCHESTRATE_STORAGE"].endswith("@postgres:5432/optuna")
        assert environment["ORCHESTRATE_HEARTBEAT_SECONDS"].isdigit()


def test_database_urls_name_a_driver_the_image_installs() -> None:
    # The image installs the project's dependencies only: each URL names its driver outright,
    # since SQLAlchemy's default driver for postgresql:// differs between its releases.
    services = load_compose()["services"]
    urls = [
        services["orchestrate"]["environment"]["ORCHESTRATE_STORAGE"],
        services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"],
    ]
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    installed = {re.match(r"[\w-]+", dependency)[0].lower() for dependency in dependencies}
    for url in urls:
        dialect, _, driver = url.partition("://")[0].partition("+")
        assert dialect == "postgresql" and driver in installed, url


def _mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Container path -> named volume (or host path) of a service's volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = source
    return mounts


def _volume_holding(path: Path, mounts: Mapping[str, str]) -> str | None:
    for target, source in mounts.items():
        if path == Path(target) or Path(target) in path.parents:
            return source
    return None


def test_datasets_and_checkpoints_are_shared_volumes_where_the_tool_looks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = load_compose()["services"]
    (workdir,) = _dockerfile("WORKDIR")[-1:]
    users = _dockerfile("USER")
    assert users and users[-1] not in ("root", "0")
    assert _dockerfile("ENTRYPOINT")[-1] == '["orchestrate"]'
    home = Path("/home") / users[-1]
    # A sweep that leaves execution.cache_dir unset caches checkpoints beside its workspace.
    config = parse_config({"name": "alds_rate"}, "test")
    cache = Path(workdir) / workspace.cache_folder(config)
    assert {"state", "datasets", "gpu-slots"} <= set(load_compose()["volumes"])
    for name in TOOL_SERVICES:
        service = services[name]
        mounts = _mounts(service)
        monkeypatch.setenv("ORCHESTRATE_DATA", service["environment"]["ORCHESTRATE_DATA"])
        monkeypatch.setenv("HOME", str(home))
        assert _volume_holding(cache, mounts) == "state", name
        assert _volume_holding(data.default_root(), mounts) == "datasets", name
        # The default a sweep may also write out, as sweeps/alds_rate.yaml does.
        assert _volume_holding(Path("~/.cache/orchestrate/data").expanduser(), mounts) == "datasets"
    worker = services["worker"]
    assert _mounts(worker)[worker["environment"]["GPU_SLOTS_DIR"]] == "gpu-slots"


def _orchestrate_commands() -> list[list[str]]:
    """Every orchestrate command line the stack runs or its docs tell a user to run."""
    services = load_compose()["services"]
    commands = [services["worker"]["command"]]
    texts = [COMPOSE.read_text(), (ROOT / "docs" / "distributed.md").read_text()]
    for text in texts:
        for line in re.findall(r"docker compose run --rm orchestrate ([a-z][^\n`]*)", text):
            commands.append(shlex.split(line.split("#")[0]))
    return [c for c in commands if c and not c[0].startswith("-")]


def test_commands_name_real_cli_options() -> None:
    commands = _orchestrate_commands()
    assert ["sweep", "sweeps/alds_rate.yaml", "--enqueue-only"] in commands
    helps: dict[str, str] = {}
    for command in commands:
        name = command[0]
        if name not in helps:
            helps[name] = _help(cli.main, name)
        for option in _options(command):
            assert re.search(rf"(?<![\w-]){re.escape(option)}\b", helps[name]), (command, option)
        if name == "sweep":
            assert (ROOT / command[1]).is_file(), command
    # stack-orchestrate.sh adds --storage to these commands: each must have the option.
    script = (DOCKER / "stack-orchestrate.sh").read_text()
    wrapped = re.search(r"^\s*([a-z |]+)\)\s*$", script, re.MULTILINE)[1].split("|")
    for name in wrapped:
        assert "--storage" in _help(cli.main, name.strip()), name

    services = load_compose()["services"]
    mlflow = argv(services["mlflow"])
    assert mlflow[:2] == ["mlflow", "server"]
    assert "basic-auth" in _help(mlflow_cli, "server")
    mlflow_help = _help(mlflow_cli, "server")
    for option in _options(mlflow):
        assert option in mlflow_help, option
    # The server's settings passed as environment variables are those of its options, or
    # variables MLflow itself reads (mlflow.environment_variables: the job runner switch).
    server_envvars = {param.envvar for param in mlflow_cli.commands["server"].params}
    known = {
        value.name
        for value in vars(mlflow_variables).values()
        if hasattr(value, "name") and hasattr(value, "get")
    }
    assert set(services["mlflow"]["environment"]) <= server_envvars | known
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    dashboard = argv(services["dashboard"])
    result = subprocess.run(
        [str(Path(sys.executable).parent / dashboard[0]), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for option in _options(dashboard):
        assert option in result.stdout, option


# ----------------------------------------------------------------------------- docker/ scripts


def _run(
    command: list[str], env: Mapping[str, str], **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=dict(env), capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def test_stack_orchestrate_adds_the_stack_storage(tmp_path: Path) -> None:
    script = str(DOCKER / "stack-orchestrate.sh")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "ORCHESTRATE_STORAGE": f"sqlite:///{tmp_path / 'stack.db'}",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    result = _run([script, "status", "--study", "absent"], env)
    assert result.returncode == 2
    # The stack's storage is read, and a read creates nothing.
    assert f"no study storage at sqlite:///{tmp_path / 'stack.db'}" in result.stderr
    assert not (tmp_path / "stack.db").exists()
    # A --storage given on the command line wins over the stack's.
    result = _run([script, "status", "--study", "absent", "--storage", "nodb://x"], env)
    assert result.returncode == 2 and "'nodb://x'" in result.stderr
    # Commands without a study pass through untouched (run elsewhere than the checkout, whose
    # .orchestrate/quickstart the README's quickstart may have filled).
    result = _run([script, "validate", str(ROOT / "sweeps/quickstart.yaml")], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    del env["ORCHESTRATE_STORAGE"]
    result = _run([script, "status", "--study", "absent"], env)
    assert result.returncode != 0 and "ORCHESTRATE_STORAGE" in result.stderr


@pytest.fixture
def fake_gpus(tmp_path: Path) -> Callable[[int], dict[str, str]]:
    """The environment of a container that sees N GPUs (an ``nvidia-smi`` that lists them)."""

    def environment(count: int) -> dict[str, str]:
        folder = tmp_path / f"bin-{count}"
        folder.mkdir(exist_ok=True)
        listing = "".join(f"GPU {i}: Fake GPU (UUID: GPU-{i:08d})\\n" for i in range(count))
        smi = folder / "nvidia-smi"
        smi.write_text(f'#!/bin/sh\n[ "$1" = --list-gpus ] && printf "{listing}"\n')
        smi.chmod(0o755)
        return {
            "PATH": f"{folder}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "GPU_SLOTS_DIR": str(tmp_path / "slots"),
        }

    return environment


class _Holder:
    """A process started through gpu-slot.sh that holds its slot until released."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            [str(DOCKER / "gpu-slot.sh"), "sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES"; read x'],
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.gpu = self.process.stdout.readline().strip()

    def release(self) -> None:
        self.process.communicate(input="\n", timeout=30)


def test_gpu_slot_gives_each_replica_its_own_gpu(fake_gpus: Callable[[int], dict]) -> None:
    env = fake_gpus(2)
    first, second = _Holder(env), _Holder(env)
    try:
        assert {first.gpu, second.gpu} == {"0", "1"}
        third = _run([str(DOCKER / "gpu-slot.sh"), "true"], env)
        assert third.returncode == 1
        assert "all 2 slots" in third.stderr and "WORKERS_PER_GPU" in third.stderr
        # The slot is free as soon as its process is gone (a crashed worker's restart gets one).
        freed = first.gpu
        first.release()
        replacement = _Holder(env)
        assert replacement.gpu == freed
        replacement.release()
    finally:
        for holder in (first, second):
            if holder.process.poll() is None:
                holder.release()


def test_gpu_slot_shares_a_gpu_when_asked(fake_gpus: Callable[[int], dict]) -> None:
    env = {**fake_gpus(1), "WORKERS_PER_GPU": "2"}
    holders = [_Holder(env), _Holder(env)]
    try:
        assert [h.gpu for h in holders] == ["0", "0"]
        assert _run([str(DOCKER / "gpu-slot.sh"), "true"], env).returncode == 1
    finally:
        for holder in holders:
            holder.release()


def test_gpu_slot_refuses_clearly_without_a_gpu(fake_gpus: Callable[[int], dict]) -> None:
    result = _run([str(DOCKER / "gpu-slot.sh"), "true"], fake_gpus(0))
    assert result.returncode == 1
    assert "no NVIDIA GPU visible" in result.stderr and "--device cpu" in result.stderr
    bad = _run([str(DOCKER / "gpu-slot.sh"), "true"], {**fake_gpus(1), "WORKERS_PER_GPU": "0"})
    assert bad.returncode == 2 and "WORKERS_PER_GPU must be a positive integer" in bad.stderr


def test_postgres_init_script_creates_the_mlflow_database(
    postgres_database: Callable[[], str],
) -> None:
    from urllib.parse import urlsplit

    # A fresh name the fixture drops afterwards; the init script must create it itself.
    url = urlsplit(postgres_database())
    name = url.path.lstrip("/")
    admin = psycopg.connect(url._replace(path="/test").geturl(), autocommit=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE {name}")
        postgres = load_compose()["services"]["postgres"]
        env = {
            **os.environ,
            **postgres["environment"],
            "PGHOST": url.hostname or "127.0.0.1",
            "PGPORT": str(url.port or 5432),
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_DB": "test",
            "MLFLOW_DB": name,
        }
        init = DOCKER / "postgres-init" / "create-mlflow-database.sh"
        assert ("./docker/postgres-init:/docker-entrypoint-initdb.d:ro") in postgres["volumes"]
        result = _run([str(init)], env)
        assert result.returncode == 0, result.stderr
        with admin.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            assert cursor.fetchone() == (1,)
        # The compose file names the database the MLflow server's URL points at.
        assert postgres["environment"]["MLFLOW_DB"] == "mlflow"
        mlflow_url = load_compose()["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
        assert mlflow_url.endswith("@postgres:5432/mlflow")
    finally:
        admin.close()
