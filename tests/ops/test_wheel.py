"""calltracker as an installed package: a wheel, outside the checkout, migrates and serves."""

from __future__ import annotations

import json
import os
import site
import socket
import subprocess
import sys
import time
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("calltracker-*.whl")
    return built


def test_the_wheel_carries_the_widget_migrations_templates_and_static_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "calltracker/widget/widget.js" in names
    assert "calltracker/migrations/env.py" in names
    assert any(n.startswith("calltracker/migrations/versions/") for n in names)
    assert "calltracker/web/templates/base.html" in names
    assert any(n.startswith("calltracker/web/static/") for n in names)
    assert "number_pool/lease.lua" in names


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_installed_wheel_migrates_and_serves_the_demo_outside_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    # The dependencies come from the test run's own environment, behind the wheel: only the
    # wheel's calltracker is importable there (the checkout's is an editable hook, not a path).
    purelib = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True
        ).strip()
    )
    (purelib / "deps-from-test-run.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLTRACKER_", "PYTHONPATH"))}
    env.update(
        CALLTRACKER_DATABASE_URL=f"sqlite:///{work / 'ct.db'}",
        CALLTRACKER_PORT=str(port),
        CALLTRACKER_AGI_PORT="off",
        CALLTRACKER_RECORDINGS_DIR=str(work / "recordings"),
    )
    calltracker = [python, "-m", "calltracker"]
    where = subprocess.check_output(
        [python, "-c", "import calltracker; print(calltracker.__file__)"],
        cwd=work,
        env=env,
        text=True,
    )
    assert Path(where.strip()).is_relative_to(env_dir), where
    subprocess.run([*calltracker, "migrate"], cwd=work, env=env, check=True, capture_output=True)
    subprocess.run([*calltracker, "demo"], cwd=work, env=env, check=True, capture_output=True)
    server = subprocess.Popen(
        [*calltracker, "serve"],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        script = urllib.request.urlopen(base + "/widget.js", timeout=5).read()
        assert b"calltracker" in script
        assert b"widget.js" in urllib.request.urlopen(base + "/demo/", timeout=5).read()
        visit = urllib.request.Request(
            base + "/api/v1/visits",
            data=json.dumps(
                {"site_key": "demo", "url": "http://127.0.0.1/?utm_source=yandex&utm_medium=cpc"}
            ).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "Mozilla/5.0 Chrome/126"},
        )
        answer = json.load(urllib.request.urlopen(visit, timeout=5))
        assert answer["kind"] == "pool" and answer["source"] == "yandex"
        login = urllib.request.urlopen(base + "/login", timeout=5).read()
        assert b"<form" in login  # templates and static files came with the wheel
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()
