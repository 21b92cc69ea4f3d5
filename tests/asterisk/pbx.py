"""A real Asterisk for the suite: found, unpacked, run on the project's asterisk_conf/.

The configuration is asterisk_conf/ as shipped; only ports and addresses change, by the
rules of substitutions() (each must match what it expects, so a file that drifts from them
fails loudly here instead of being tested half-changed), plus rtp.conf for the RTP range.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import re
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "asterisk_conf"
CACHE = ROOT / ".cache" / "asterisk"
ENV = "CALLTRACKER_TEST_ASTERISK"
TARBALL = "asterisk-22*-pjsip-*.tar.xz"
# The trunk (SIPp playing the provider) sends from its own loopback address, as a
# provider's server has its own.
TRUNK_ADDRESS = "127.0.0.2"
PBX_ADDRESS = "127.0.0.1"
AMI_USERNAME = "calltracker"


def host_timezone() -> str:
    """The zone Asterisk writes CDR times in (the host's), as import-cdr must be told it."""
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "/zoneinfo/" in target:
            return target.split("/zoneinfo/", 1)[1]
    named = Path("/etc/timezone")
    if named.is_file() and named.read_text().strip():
        return named.read_text().strip()
    return "UTC"


PBX_TIMEZONE = host_timezone()
HOW_TO_GET = (
    f"set {ENV} to the folder holding {TARBALL} (or to an unpacked tree, or an `asterisk` "
    "binary), keep the project's shared/asterisk beside the checkout, or put `asterisk` on "
    "PATH; `bash scripts/ensure-test-services.sh` installs its runtime packages and SIPp"
)


class AsteriskUnavailable(Exception):
    """No Asterisk to run, or it cannot run here; the message says what to do."""


@dataclass(frozen=True)
class Build:
    """An Asterisk that can run: the relocatable tree (with bin/ast-start), or a binary."""

    binary: Path
    tree: Path | None  # the unpacked relocatable tree; None for an `asterisk` on PATH
    origin: str  # where it was found, for messages

    def version(self) -> str:
        done = subprocess.run([self.binary, "-V"], capture_output=True, text=True, timeout=10)
        return done.stdout.strip()


def locate() -> Build:
    """The environment variable, then shared/asterisk beside the checkout, then PATH."""
    named = os.environ.get(ENV, "").strip()
    if named:
        return _from_path(Path(named), f"{ENV}={named}")
    for parent in ROOT.parents:
        shared = parent / "shared" / "asterisk"
        if shared.is_dir():
            return _from_path(shared, str(shared))
    found = shutil.which("asterisk")
    if found:
        return Build(Path(found), None, "asterisk on PATH")
    raise AsteriskUnavailable(f"no Asterisk found: {HOW_TO_GET}")


def _from_path(path: Path, origin: str) -> Build:
    if path.is_file() and path.name.endswith(".tar.xz"):
        return _unpacked(path, origin)
    if (path / "bin" / "ast-start").is_file():
        return _checked(Build(path / "sbin" / "asterisk", path, origin))
    if path.is_file() and os.access(path, os.X_OK):
        return Build(path, None, origin)
    if path.is_dir():
        tarballs = sorted(path.glob(TARBALL))
        if tarballs:
            return _unpacked(tarballs[-1], origin)
    raise AsteriskUnavailable(f"{origin}: neither {TARBALL}, an unpacked tree nor a binary")


def _unpacked(tarball: Path, origin: str) -> Build:
    """The tarball unpacked once into .cache/asterisk/, checked against SHA256SUMS if any."""
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    sums = tarball.with_name("SHA256SUMS")
    if sums.is_file():
        listed = {
            name.strip(): value
            for value, _, name in (line.partition(" ") for line in sums.read_text().splitlines())
        }
        if listed.get(tarball.name, digest) != digest:
            raise AsteriskUnavailable(f"{tarball}: does not match its SHA256SUMS")
    name = tarball.name.removesuffix(".tar.xz")
    target = CACHE / f"{name}-{digest[:12]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    # Two test runs of one checkout may start together: one unpacks, the other waits.
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "bin" / "ast-start").is_file():
            scratch = CACHE / f".unpacking-{os.getpid()}"
            shutil.rmtree(scratch, ignore_errors=True)
            with tarfile.open(tarball) as archive:
                archive.extractall(scratch, filter="tar")
            (tree,) = [p for p in scratch.iterdir() if p.is_dir()]
            shutil.rmtree(target, ignore_errors=True)
            tree.rename(target)
            shutil.rmtree(scratch, ignore_errors=True)
    return _checked(Build(target / "sbin" / "asterisk", target, f"{origin} ({tarball.name})"))


def _checked(build: Build) -> Build:
    """A tree whose libraries are all there (its Debian runtime packages installed)."""
    done = subprocess.run(["ldd", build.binary], capture_output=True, text=True, timeout=30)
    missing = sorted({line.split()[0] for line in done.stdout.splitlines() if "not found" in line})
    if missing:
        raise AsteriskUnavailable(
            f"{build.origin}: libraries missing: {', '.join(missing)}; install the packages in "
            "its DEBIAN-RUNTIME-PACKAGES (as root: bash scripts/ensure-test-services.sh)"
        )
    return build


# -- ports --------------------------------------------------------------------------------


def free_tcp_port(host: str = PBX_ADDRESS) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_port(host: str = PBX_ADDRESS, span: int = 1) -> int:
    """A port with the `span - 1` after it free too (SIPp's media uses port and port + 2)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port + span < 65535 and all(_udp_free(host, p) for p in range(port, port + span)):
            return port
    raise RuntimeError("no free UDP ports")


def free_udp_range(size: int) -> int:
    """The first of `size` consecutive free UDP ports, at random in the high range."""
    for _ in range(200):
        start = random.randrange(20000, 60000 - size, 2)
        if all(_udp_free("0.0.0.0", p) for p in range(start, start + size)):
            return start
    raise RuntimeError(f"no {size} consecutive free UDP ports")


def _udp_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Ports:
    ami: int
    sip: int
    rtp_start: int
    rtp_end: int
    agi: int  # calltracker's FastAGI, as the dialplan's CALLTRACKER_AGI_PORT

    @classmethod
    def pick(cls) -> Ports:
        rtp = free_udp_range(200)
        return cls(free_tcp_port(), free_udp_port(), rtp, rtp + 199, free_tcp_port())


# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One change to a shipped file: `pattern` (a regex over whole lines) -> `replacement`."""

    file: str
    pattern: str
    replacement: str
    count: int | None  # exactly this many lines must match; None: any number, also none
    why: str


def substitutions(ports: Ports, state: Path, ami_secret: str) -> list[Rule]:
    recordings = state / "spool" / "monitor" / "calltracker"
    return [
        Rule("manager.conf", r"^port = \d+$", f"port = {ports.ami}", 1, "AMI port"),
        Rule("manager.conf", r"^bindaddr = .*$", f"bindaddr = {PBX_ADDRESS}", 1, "AMI address"),
        Rule("manager.conf", r"^secret = .*$", f"secret = {ami_secret}", 1, "the AMI secret"),
        Rule(
            "pjsip.conf",
            r"^bind = 0\.0\.0\.0:5060$",
            f"bind = {PBX_ADDRESS}:{ports.sip}",
            1,
            "SIP port",
        ),
        # The provider's signalling addresses become the trunk's. A hostname is left as it
        # is: then the identify is not created and the trunk's calls fail, as they would.
        Rule(
            "pjsip.conf",
            r"^match = \d+\.\d+\.\d+\.\d+(/\d+)?$",
            f"match = {TRUNK_ADDRESS}",
            None,
            "the provider's address",
        ),
        Rule(
            "extensions.conf",
            r"^CALLTRACKER_HOST = .*$",
            f"CALLTRACKER_HOST = {PBX_ADDRESS}",
            1,
            "FastAGI address",
        ),
        Rule(
            "extensions.conf",
            r"^CALLTRACKER_AGI_PORT = \d+$",
            f"CALLTRACKER_AGI_PORT = {ports.agi}",
            1,
            "FastAGI port",
        ),
        Rule(
            "extensions.conf",
            r"^RECORDINGS_DIR = /var/spool/asterisk/monitor/calltracker$",
            f"RECORDINGS_DIR = {recordings}",
            1,
            "the recordings folder, inside this PBX's own spool",
        ),
    ]


class ConfDrift(AssertionError):
    """A shipped file no longer has a line the harness changes."""


def render_conf(target: Path, ports: Ports, state: Path, ami_secret: str) -> None:
    """asterisk_conf/*.conf into `target`, ports and addresses changed, plus rtp.conf."""
    target.mkdir(parents=True, exist_ok=True)
    texts = {p.name: p.read_text() for p in sorted(CONF.glob("*.conf"))}
    for rule in substitutions(ports, state, ami_secret):
        text, n = re.subn(rule.pattern, rule.replacement, texts[rule.file], flags=re.M)
        if rule.count is not None and n != rule.count:
            raise ConfDrift(
                f"asterisk_conf/{rule.file}: {rule.why}: expected {rule.count} line(s) "
                f"matching {rule.pattern!r}, found {n}; the suite changes only ports and "
                "addresses: update tests/asterisk/pbx.py if the file changed on purpose"
            )
        texts[rule.file] = text
    assert "rtp.conf" not in texts, "asterisk_conf/ now ships rtp.conf: template its range"
    texts["rtp.conf"] = f"[general]\nrtpstart = {ports.rtp_start}\nrtpend = {ports.rtp_end}\n"
    for name, text in texts.items():
        (target / name).write_text(text)


# -- running ------------------------------------------------------------------------------


class Pbx:
    """One running Asterisk: its ports, its state folder, its CLI."""

    def __init__(self, build: Build, workdir: Path, ports: Ports, ami_secret: str) -> None:
        self.build = build
        self.ports = ports
        self.ami_secret = ami_secret
        self.conf = workdir / "conf"
        self.state = workdir / "state"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def asterisk_conf(self) -> Path:
        return self.state / "etc" / "asterisk.conf"

    @property
    def recordings(self) -> Path:
        return self.state / "spool" / "monitor" / "calltracker"

    @property
    def cdr_custom(self) -> Path:
        return self.state / "log" / "cdr-custom"

    @property
    def messages_log(self) -> Path:
        return self.state / "log" / "messages.log"

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> None:
        render_conf(self.conf, self.ports, self.state, self.ami_secret)
        if self.build.tree is not None:
            done = subprocess.run(
                [self.build.tree / "bin" / "ast-start", self.conf, self.state],
                capture_output=True,
                text=True,
                env=self._env(),
                timeout=120,
            )
            if done.returncode != 0:
                raise AsteriskUnavailable(f"ast-start failed: {done.stdout}{done.stderr}")
        else:
            self._start_system_binary()

    def _start_system_binary(self) -> None:
        """An `asterisk` of the system: its own modules, everything it writes in the state."""
        etc = self.state / "etc"
        for sub in ("etc", "run", "log/cdr-csv", "log/cdr-custom", "spool/monitor", "lib"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        for conf in self.conf.glob("*.conf"):
            shutil.copy(conf, etc / conf.name)
        (etc / "asterisk.conf").write_text(
            "[directories]\n"
            f"astetcdir => {etc}\nastdbdir => {self.state / 'lib'}\n"
            f"astkeydir => {self.state}\nastspooldir => {self.state / 'spool'}\n"
            f"astrundir => {self.state / 'run'}\nastlogdir => {self.state / 'log'}\n"
        )
        with (self.state / "log" / "stdout").open("wb") as log:
            self._process = subprocess.Popen(
                [self.build.binary, "-f", "-C", self.asterisk_conf],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AsteriskUnavailable(f"asterisk exited; see {self.state / 'log'}")
            with contextlib.suppress(subprocess.SubprocessError):
                if "fully booted" in self.cli("core waitfullybooted", check=False).lower():
                    return
            time.sleep(0.5)
        raise AsteriskUnavailable(f"asterisk did not boot; see {self.state / 'log'}")

    def stop(self) -> None:
        if self.build.tree is not None:
            subprocess.run(
                [self.build.tree / "bin" / "ast-stop", self.state],
                capture_output=True,
                timeout=60,
            )
        elif self._process is not None:
            with contextlib.suppress(subprocess.SubprocessError):
                self.cli("core stop now", check=False)
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def cli(self, command: str, *, check: bool = True) -> str:
        """`asterisk -rx` on this PBX's control socket."""
        done = subprocess.run(
            [self.build.binary, "-C", self.asterisk_conf, "-rx", command],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"asterisk -rx {command!r}: {done.stdout}{done.stderr}")
        return done.stdout

    def set_global(self, name: str, value: str) -> None:
        self.cli(f"dialplan set global {name} {value}")

    @contextlib.contextmanager
    def globals_set(self, **values: str) -> Iterator[None]:
        """Dialplan globals changed for one test, restored to the shipped values after."""
        shipped = (self.conf / "extensions.conf").read_text()
        before = {}
        for name in values:
            found = re.search(rf"^{name} = (.*)$", shipped, re.M)
            assert found is not None, f"extensions.conf has no global {name}"
            before[name] = found.group(1).strip()
        for name, value in values.items():
            self.set_global(name, value)
        try:
            yield
        finally:
            for name, value in before.items():
                self.set_global(name, value)

    def channels(self) -> list[str]:
        out = self.cli("core show channels concise")
        return [line for line in out.splitlines() if "!" in line]

    def channel_variables(self, prefix: str) -> dict[str, str]:
        """The dialplan variables of the live channel whose name starts with `prefix`."""
        names = [line.split("!", 1)[0] for line in self.channels()]
        found = [n for n in names if n.startswith(prefix)]
        assert found, f"no channel {prefix}*: {names}"
        out = self.cli(f"core show channel {found[0]}")
        _, _, block = out.partition("Variables:")
        return dict(line.strip().split("=", 1) for line in block.splitlines() if "=" in line)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.messages_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
