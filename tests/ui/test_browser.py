"""The Key Lifecycle page in a real headless browser, inside a real Airflow.

``airflow standalone`` (as ``scripts/demo.py`` runs it: scheduler, DAG processor, triggerer, API
server) with the kmsflow DAGs, the provider's plugin (entry point) and the ``plugins/`` folder
mounted too; a real ``kmsflow_shred`` run (dry) writes the inventory snapshot from its proof scan. Debian's
``chromium`` (installed here when missing), driven by Playwright through ``executable_path`` --
never a downloaded browser -- logs in through Airflow's login page, opens Browse → KMS keys
(``/plugin/kmsflow``, the page in Airflow's iframe) and checks what a person would read: versions,
counts, the blocker named like markup shown as text, the buttons, and a dry-run shred triggered by
the button as the logged-in user. A viewer sees the page without buttons.

The screenshot is saved as ``key-lifecycle.png`` in the test's tmp dir, and also into
``$KMSFLOW_SCREENSHOT_DIR`` when set (``docs/img/key-lifecycle.png`` is made that way).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.celery_cluster import apt_install
from pagekit import XSS_NAME, Lifecycle, connection, make_lifecycle

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))  # the demo's local Airflow, reused as is
from local_airflow import LocalAirflow  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORDS = {"admin": "admin-secret-ui", "viewer": "viewer-secret-ui"}
TIMEOUT_MS = 60_000
DAG_IDS = ("kmsflow_rotate_rewrap", "kmsflow_shred")


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, installed by the test set-up when missing (like the Celery harness's Redis)."""
    if not os.path.exists(CHROMIUM):
        apt_install("chromium")
    return CHROMIUM


@pytest.fixture
def airflow(tmp_path: Path, fresh_emulator: Any, ring_id: str) -> Iterator[tuple[LocalAirflow, Lifecycle]]:
    """The lifecycle world 31 days after the rotation (v1 due for disabling, but referenced), and
    ``airflow standalone`` with the page, its spec and a connection to the (private) emulator."""
    world = make_lifecycle(tmp_path / "world", fresh_emulator.client(), ring_id)
    fresh_emulator.admin.advance(31 * 86400)
    emulator = fresh_emulator
    home = tmp_path / "airflow"
    home.mkdir()
    dags = tmp_path / "dags"  # only the two DAGs the page drives: less parsing on a busy machine
    dags.mkdir()
    for dag_id in DAG_IDS:
        (dags / f"{dag_id}.py").symlink_to(REPO / "dags" / f"{dag_id}.py")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    local = LocalAirflow(
        home,
        dags,
        {
            # A shared 2-core machine under load: Airflow's own defaults (5 s to the execution API,
            # 30 s to parse a DAG file) fail tasks that would succeed.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "120",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "600",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "KMSFLOW_SPEC": str(world.spec),
            "AIRFLOW_CONN_KMSFLOW_DEFAULT": connection(emulator.endpoint),
        },
    )
    try:
        local.start(list(DAG_IDS), timeout=480)
        yield local, world
    finally:
        local.stop()


def log_tail(local: LocalAirflow) -> str:
    path = local.home / "standalone.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


def login(page: Any, base: str, user: str) -> None:
    page.goto(f"{base}/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/" not in url and "login" not in url, timeout=TIMEOUT_MS)


@pytest.mark.timeout(2700)
def test_the_key_lifecycle_page_in_a_real_browser(
    airflow: tuple[LocalAirflow, Lifecycle], chromium: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    local, world = airflow
    # A dry manual shred: v1 is due for disabling, so the run makes its proof scan -- which becomes
    # the snapshot -- and finds v1 still referenced by two envelopes (refused: a normal outcome).
    state, run_id = local.run_dag("kmsflow_shred", {"dry_run": True}, timeout=1200)
    assert state == "success", log_tail(local)
    base = f"http://127.0.0.1:{local.env['AIRFLOW__API__PORT']}"
    dialogs: list[str] = []
    shot = tmp_path / "key-lifecycle.png"
    expect.set_options(timeout=TIMEOUT_MS)  # the page's first request imports the KMS client
    with sync_playwright() as p:
        # launch() gives Chromium a fresh, empty --user-data-dir of its own (a new temp dir per
        # launch; Playwright refuses the flag here), so nothing carries over between runs.
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            login(page, base, "admin")
            page.goto(f"{base}/plugin/kmsflow")
            expect(page.locator("iframe")).to_have_attribute("src", re.compile(r"/kmsflow/$"))
            frame = page.frame_locator("iframe")
            key = frame.locator(f'section.key[data-key="{world.key}"]')
            v1, v2 = key.locator('tr[data-version="1"]'), key.locator('tr[data-version="2"]')
            expect(v1.locator("td.state")).to_have_text("ENABLED")
            expect(v1.locator("td.envelopes")).to_have_text("2")
            expect(v1.locator("td.files")).to_have_text("2")
            expect(v2.locator("td.envelopes")).to_have_text("1")
            expect(v2.locator(".badge")).to_have_text("primary")
            expect(v1.locator("td.stage")).to_contain_text("in use")
            expect(frame.locator("#snapshot")).to_contain_text("complete")
            expect(frame.locator("#snapshot a")).to_have_text(f"kmsflow_shred/{run_id}")
            v1.locator("td.blockers summary").click()
            expect(v1.locator("td.blockers summary")).to_have_text("2 envelope(s)")
            blocker = v1.locator("td.blockers li", has_text="onerror")
            expect(blocker).to_have_text(str(world.root / f"{XSS_NAME}.enc"))  # the name, as text
            assert frame.locator("img").count() == 0 and dialogs == []  # and it never became markup
            page.screenshot(path=str(shot), full_page=True)

            key.get_by_role("button", name="Dry-run shred").click()
            status = frame.locator("#action-status")
            expect(status).to_contain_text("kmsflow_shred run", timeout=TIMEOUT_MS)
            runs = page.request.get(f"{base}/api/v2/dags/kmsflow_shred/dagRuns").json()["dag_runs"]
            (mine,) = [r for r in runs if r["conf"].get("reason", "").startswith("dry run from the Key")]
            assert mine["dag_run_id"] != run_id
            assert mine["triggering_user_name"] == "admin" and mine["conf"]["dry_run"] is True

            viewer = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
            viewer.set_default_timeout(TIMEOUT_MS)
            login(viewer, base, "viewer")
            viewer.goto(f"{base}/plugin/kmsflow")
            seen = viewer.frame_locator("iframe")
            expect(seen.locator('tr[data-version="1"] td.envelopes')).to_have_text("2")
            assert seen.locator("button[data-action]").count() == 0
        except Exception as exc:
            alive = local.running()
            shown = "(unreadable)"
            with contextlib.suppress(Exception):
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                shown = page.frame_locator("iframe").locator("body").inner_text(timeout=5000)[:2000]
            raise AssertionError(
                f"{exc}\nthe page showed: {shown}\nAirflow alive: {alive}\n{log_tail(local)}"
            ) from exc
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("KMSFLOW_SCREENSHOT_DIR"):
        target = Path(os.environ["KMSFLOW_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target / shot.name)
