"""The docker-compose topology without containers, for tests/e2e/test_celery_cluster.py and
bench/rewrap_cluster.py.

PostgreSQL (the machine's binaries, a cluster in a temp dir), Redis (Debian's ``redis-server``,
installed here when missing), the KMS emulator (IAM enforced) and the GCS emulator, then Airflow
with the CeleryExecutor: api-server, scheduler, dag-processor, triggerer and two Celery workers.
The workers report distinct hostnames (``[core] hostname_callable`` -> ``celery_hostname``), so task
instances show which one ran them. Every wait has a deadline and fails fast, with the log tail of
the component that died; ``stop`` ends every process group. ``started`` starts it all for one key
spec; ``seed_envelopes`` fills a ``gs://`` root with real envelopes quickly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from google.cloud import kms_v1

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OWNER = "user:owner@example.com"
JWT_SECRET = "kmsflow-e2e-only"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listens on port {port} after {timeout:.0f}s")


def postgres_bin() -> Path:
    """The newest PostgreSQL server binaries of the machine (Debian's layout); Debian's
    ``postgresql`` is installed when there are none (as root)."""
    for attempt in range(2):
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        if found:
            return found[-1].parent
        if attempt == 0:
            apt_install("postgresql")
    raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")


def ensure_redis() -> str:
    """``redis-server``; installed from Debian's packages when missing (as root)."""
    found = shutil.which("redis-server")
    if found:
        return found
    apt_install("redis-server")
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("apt-get installed redis-server but it is not on PATH")
    return found


def apt_install(package: str) -> None:
    """``apt-get install package`` (refreshing the package lists if the first try fails)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"{package} is missing and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if subprocess.run(install, env=env, capture_output=True, timeout=600, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600, check=True)
        subprocess.run(install, env=env, capture_output=True, timeout=600, check=True)


class Cluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[str] = set()  # by ``kill``: their end is expected
        self.env: dict[str, str] = {}
        self.pg_port = self.redis_port = self.api_port = self.kms_port = self.gcs_port = 0
        self.pg_dir: Path | None = None

    # --- processes ------------------------------------------------------------------------------
    def spawn(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.base / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.base, start_new_session=True
        )
        self.processes[name] = process
        return process

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group: a machine lost mid-task."""
        process = self.processes[name]
        self.killed.add(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def check_alive(self) -> None:
        """Raise, with its log tail, if a component ended that ``kill`` did not end: every wait
        calls this, so a dead scheduler or worker fails the test at once, not at a deadline."""
        for name, process in self.processes.items():
            if name not in self.killed and process.poll() is not None:
                tail = (self.base / f"{name}.log").read_text(errors="replace").splitlines()[-40:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n" + "\n".join(tail))

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        if self.pg_dir is not None:
            shutil.rmtree(self.pg_dir, ignore_errors=True)

    def log_tails(self, lines: int = 15) -> str:
        parts = []
        for name in self.processes:
            text = (self.base / f"{name}.log").read_text(errors="replace").splitlines()
            parts.append(f"--- {name}\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    # --- services -------------------------------------------------------------------------------
    def start_postgres(self) -> None:
        pg_bin = postgres_bin()
        # Outside pytest's tmp (mode 0700, root's): as root the server runs as the postgres account
        # (initdb refuses root), which must reach its directories.
        self.pg_dir = Path(tempfile.mkdtemp(prefix="kmsflow-e2e-pg-"))
        data, sockets = self.pg_dir / "data", self.pg_dir / "socket"
        data.mkdir()
        sockets.mkdir()
        as_user: list[str] = []
        if os.geteuid() == 0:
            for path in (self.pg_dir, data, sockets):
                shutil.chown(path, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        data.chmod(0o700)
        initdb = subprocess.run(
            [
                *as_user,
                str(pg_bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "airflow",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr[-2000:]}")
        self.pg_port = free_port()
        server = self.spawn(
            "postgres",
            [
                *as_user,
                str(pg_bin / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.pg_port),
                "-k",
                str(sockets),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
        )
        wait_port(self.pg_port, 60, server)
        deadline = time.monotonic() + 60
        while True:
            created = self.psql("CREATE DATABASE airflow", database="postgres", check=False)
            if created.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(created.stderr)
            time.sleep(0.5)

    def psql(
        self, sql: str, database: str = "airflow", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(postgres_bin() / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.pg_port),
                "-U",
                "airflow",
                "-d",
                database,
                "-At",
                "-F",
                "|",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def rows(self, sql: str) -> list[list[str]]:
        return [line.split("|") for line in self.psql(sql).stdout.splitlines() if line]

    def start_redis(self) -> None:
        server = ensure_redis()
        self.redis_port = free_port()
        process = self.spawn(
            "redis",
            [
                server,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        wait_port(self.redis_port, 60, process)

    def start_emulators(self, bucket: str) -> None:
        self.kms_port, self.gcs_port = free_port(), free_port()
        kms = self.spawn(
            "kms-emulator",
            [
                str(BIN / "kmsflow-emulator"),
                "serve",
                "--port",
                str(self.kms_port),
                "--data-dir",
                str(self.base / "kms"),
                "--enforce-iam",
                "--owner",
                OWNER,
            ],
        )
        gcs = self.spawn(
            "gcs-emulator",
            [
                str(BIN / "python"),
                "-m",
                "kmsflow_emulator.gcs",
                "--port",
                str(self.gcs_port),
                "--default-bucket",
                bucket,
            ],
        )
        wait_port(self.kms_port, 60, kms)
        wait_port(self.gcs_port, 60, gcs)

    @property
    def kms_endpoint(self) -> str:
        return f"127.0.0.1:{self.kms_port}"

    @property
    def gcs_host(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def start_airflow(self, extra_env: dict[str, str], workers: tuple[str, ...] = ("w1", "w2")) -> None:
        home = self.base / "airflow"
        home.mkdir()
        self.api_port = free_port()
        db = f"airflow@127.0.0.1:{self.pg_port}/airflow"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW", "PYTHON", "KMS_EMULATOR", "KMSFLOW", "STORAGE_EMULATOR"))
        }
        env.update(
            {
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
                "PYTHONPATH": str(HERE),  # celery_hostname, for [core] hostname_callable
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "celery_hostname.get_hostname",
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{db}",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{db}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                # Every component on its own port, so that two workers -- or two clusters, e.g. a
                # test and a benchmark -- on one machine never collide on Airflow's fixed defaults.
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # A task's calls to the API server wait longer than the 5 s default: on a loaded
                # shared machine a slow answer is not a lost server (Airflow's own advice).
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                **extra_env,
            }
        )
        self.env = env
        self.airflow("db", "migrate", timeout=300)
        api = self.spawn("api-server", [str(BIN / "airflow"), "api-server"], env)
        for component in ("scheduler", "dag-processor", "triggerer"):
            self.spawn(component, [str(BIN / "airflow"), component], env)
        for worker in workers:
            self.spawn(
                worker,
                [
                    str(BIN / "airflow"),
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"{worker}@kmsflow-e2e",
                    "--concurrency",
                    "2",
                ],
                {
                    **env,
                    "KMSFLOW_TEST_HOSTNAME": worker,
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                },
            )
        wait_port(self.api_port, 240, api)

    # --- Airflow --------------------------------------------------------------------------------
    def airflow(self, *args: str, timeout: float = 180) -> str:
        result = subprocess.run(
            [str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed: {result.stderr[-3000:]}")
        return result.stdout

    def wait_for_dags(self, dag_ids: set[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                out = self.airflow("dags", "list", "-o", "json")
            except RuntimeError:
                out = ""
            listed = {
                d["dag_id"] for line in out.splitlines() if line.startswith("[") for d in json.loads(line)
            }
            if listed >= dag_ids:
                return
            self.check_alive()
            time.sleep(3)
        raise TimeoutError(f"DAGs {sorted(dag_ids)} not parsed after {timeout:.0f}s")

    def run_dag(self, dag_id: str, conf: dict[str, Any], timeout: float = 300) -> tuple[str, str]:
        """Trigger, wait for the end; (state, run_id)."""
        run_id = self.trigger(dag_id, conf)
        return self.wait_run(dag_id, run_id, timeout), run_id

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        out = self.airflow("dags", "trigger", dag_id, "-c", json.dumps(conf), "-o", "json")
        return str(
            next(json.loads(line) for line in out.splitlines() if line.startswith("["))[0]["dag_run_id"]
        )

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.rows(f"select state from dag_run where dag_id = '{dag_id}' and run_id = '{run_id}'")
            if found and found[0][0] in ("success", "failed"):
                return found[0][0]
            self.check_alive()
            time.sleep(2)
        raise TimeoutError(f"{dag_id} run {run_id} did not finish in {timeout:.0f}s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, str]]:
        rows = self.rows(
            "select task_id, map_index, hostname, state, try_number from task_instance "
            f"where dag_id = '{dag_id}' and run_id = '{run_id}' order by task_id, map_index"
        )
        keys = ("task_id", "map_index", "hostname", "state", "try_number")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """A task's return value (``key = 'return_value'``), as stored in the metadata database."""
        rows = self.rows(
            "select value from xcom where key = 'return_value' "
            f"and dag_id = '{dag_id}' and run_id = '{run_id}' and task_id = '{task_id}' "
            f"and map_index = {map_index}"
        )
        if not rows:
            raise LookupError(f"no XCom from {dag_id}/{run_id}/{task_id}[{map_index}]")
        return json.loads("|".join(rows[0]))


DAGS = {"kmsflow_provision", "kmsflow_rotate_rewrap", "kmsflow_shred", "kmsflow_erase", "kmsflow_ml_pipeline"}
"""Every DAG kmsflow ships: ``started`` waits until all are parsed."""

KMS_DEADLINE_S = 600
"""The connection's KMS deadline: a task stalled by injected KMS faults waits instead of failing."""

HEARTBEAT_TIMEOUT_S = 20
"""A lost worker's task instances fail (and are retried) this long after their last heartbeat."""


@contextlib.contextmanager
def started(base: Path, spec: Path, bucket: str) -> Iterator[Cluster]:
    """The whole deployment under ``base``: PostgreSQL, Redis, the KMS emulator (IAM enforced,
    ``OWNER`` holds every permission) and the GCS emulator with ``bucket``, then Airflow with two
    Celery workers, the key spec at ``spec`` (``KMSFLOW_SPEC``) and the ``kmsflow_default``
    connection acting as ``OWNER``; yields once every kmsflow DAG is parsed. Prints every
    component's log tail if anything fails, and stops everything at the end."""
    running = Cluster(base)
    try:
        running.start_postgres()
        running.start_redis()
        running.start_emulators(bucket)
        connection = {
            "conn_type": "kmsflow",
            "extra": {"endpoint": running.kms_endpoint, "principal": OWNER, "deadline": KMS_DEADLINE_S},
        }
        running.start_airflow(
            {
                "KMSFLOW_SPEC": str(spec),
                "STORAGE_EMULATOR_HOST": running.gcs_host,
                "AIRFLOW_CONN_KMSFLOW_DEFAULT": json.dumps(connection),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
            }
        )
        running.wait_for_dags(DAGS)
        yield running
    except BaseException:
        print(running.log_tails())
        raise
    finally:
        running.stop()


def seed_envelopes(
    client: kms_v1.KeyManagementServiceClient, key: str, root: str, count: int, work: Path
) -> list[str]:
    """``count`` file envelopes of 256 random bytes each under ``root`` (a ``gs://`` URL), wrapped
    by ``key``'s primary; returns their URLs (``{root}/f{i}.enc``).

    Each is made by ``kmsflow.envelope.encrypt`` (one KMS Encrypt, a fresh data key) into a local
    directory, and the directory is then copied whole to ``root`` with gcsfs ``put``: JSON-API
    uploads through the GCS emulator, byte for byte what encrypt writes there itself, but without
    its dozen existence checks per envelope (a fresh destination needs none). An envelope copied
    whole still decrypts anywhere (docs/FORMAT.md), and everything the DAGs do with it afterwards
    goes through ``gs://`` only.
    """
    from kmsflow.envelope import encrypt, gcs_filesystem

    plain, sealed = work / "plain", work / "sealed"
    plain.mkdir(parents=True)
    sealed.mkdir()
    for i in range(count):
        (plain / f"f{i}").write_bytes(os.urandom(256))
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: encrypt(client, key, str(plain / f"f{i}"), str(sealed / f"f{i}.enc")), range(count)
            )
        )
    gcs_filesystem().put(f"{sealed}/", f"{root}/", recursive=True)
    shutil.rmtree(plain)
    shutil.rmtree(sealed)
    return [f"{root}/f{i}.enc" for i in range(count)]
