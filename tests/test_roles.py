"""Roles on a team server: viewer (read only), editor (tags, saved views, evaluate, embed, insights, export),
admin (ingest, delete, plugins), from a roles file, through Panel's login; the page hides what a role may not do
and every API route refuses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.browser_helpers import serve_app
from tests.test_api import ROUTES
from visionlens.config import Settings
from visionlens.errors import NotAllowedError
from visionlens.server.api import API_PREFIX

pytestmark = pytest.mark.browser

PASSWORDS = {"ann": "pw-ann-1", "bob": "pw-bob-1", "val": "pw-val-1", "zed": "pw-zed-1"}
ROLES_YAML = "default: viewer\nusers:\n  ann: admin\n  bob: editor\n"

VIEWER_WRITES: set[tuple[str, str]] = {("POST", "/samples"), ("POST", "/annotations"), ("POST", "/metrics")}
VIEWER_WRITES |= {("POST", "/similar")}
EDITOR = {
    ("POST", "/evaluate"), ("POST", "/embed"), ("POST", "/insights"), ("POST", "/tags"), ("POST", "/views"),
    ("PATCH", "/views/demo"), ("DELETE", "/views/demo"), ("POST", "/export"), ("DELETE", "/jobs/0123456789ab"),
    ("POST", "/thumbnails"),  # filling the thumbnail cache, as the Datasets page's button does for an editor
}  # fmt: skip
ADMIN = {("POST", "/datasets"), ("DELETE", "/datasets/demo"), ("POST", "/predictions")}


def least_role(method: str, path: str) -> str:
    """The issue's table, written out here independently of the server's own."""
    tail = path.removeprefix("/datasets/demo") if path.startswith("/datasets/demo/") else path
    key = (method, tail)
    if key in ADMIN or (method, path) in ADMIN:
        return "admin"
    if key in EDITOR or (method, path) in EDITOR:
        return "editor"
    assert method == "GET" or key in VIEWER_WRITES, key
    return "viewer"


# --- the roles file on its own -------------------------------------------------------------------------------------


def test_roles_file_rules(tmp_path, monkeypatch):
    from visionlens.server import roles

    path = tmp_path / "roles.yaml"
    path.write_text(ROLES_YAML)
    monkeypatch.setenv("VISIONLENS_ROLES_FILE", str(path))
    assert [roles.role_of(u) for u in ("ann", "bob", "someone", None)] == ["admin", "editor", "viewer", "viewer"]
    assert roles.role_of("token") == "admin"
    assert roles.can("bob", "evaluate") and not roles.can("bob", "ingest") and not roles.can("val", "tag")
    assert roles.can("ann", "an-action-nobody-named") and not roles.can("bob", "an-action-nobody-named")
    with pytest.raises(NotAllowedError, match="needs the admin role"):
        roles.require("bob", "delete")
    time.sleep(0.01)
    path.write_text("users:\n  ann: admin\n")  # edited while serving: read again, no default any more
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert roles.role_of("someone") is None and not roles.can("someone", "read")
    path.write_text("users:\n  ann: superuser\n")
    os.utime(path, (time.time() + 10, time.time() + 10))
    with pytest.raises(NotAllowedError, match="superuser"):
        roles.role_of("ann")
    monkeypatch.delenv("VISIONLENS_ROLES_FILE")
    assert roles.role_of("anyone") == "admin"  # no roles file: one person on their own machine
    assert Settings().roles_file is None


# --- a served app with logins --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    root = tmp_path_factory.mktemp("team")
    home = root / "home"
    env = {**os.environ, "VISIONLENS_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "visionlens.cli", "demo", "--n", "30", "--seed", "4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    creds = root / "credentials.json"
    creds.write_text(json.dumps(PASSWORDS))
    roles_file = root / "roles.yaml"
    roles_file.write_text(ROLES_YAML)
    proc, url = serve_app(
        home, "--basic-auth", str(creds), "--cookie-secret", "z" * 32, env={"VISIONLENS_ROLES_FILE": str(roles_file)}
    )
    clients = {}
    for user, password in PASSWORDS.items():
        c = httpx.Client(base_url=url, timeout=120, follow_redirects=False)
        login = c.post("/login", data={"username": user, "password": password})
        assert login.status_code == 302 and "error" not in login.headers.get("location", ""), user
        clients[user] = c
    assert clients["ann"].get("/browse").status_code == 200  # the first session mounts the API
    yield {"url": url, "clients": clients, "roles_file": roles_file, "proc": proc}
    for c in clients.values():
        c.close()
    proc.terminate()
    proc.wait(30)


@pytest.mark.parametrize("user,role", [("val", "viewer"), ("bob", "editor"), ("ann", "admin")])
def test_every_api_route_refuses_what_the_role_may_not(team, user, role):
    order = ["viewer", "editor", "admin"]
    client = team["clients"][user]
    for method, path in ROUTES:
        target = path.replace("/datasets/demo", "/datasets/no-such-dataset")
        r = client.request(method, API_PREFIX + target, content=b"{}" if method in ("POST", "PATCH") else None)
        refused = r.status_code == 403 and "role" in r.json().get("error", "")
        may = order.index(role) >= order.index(least_role(method, path))
        assert refused != may, (user, role, method, path, r.status_code, r.text)
        assert r.status_code != 401


def test_the_page_hides_what_the_role_may_not(team, browser):
    expectations = {
        "val": {".vl-evaluate": False, ".vl-find-insights": False, ".vl-tags-row": False, "ingest": False},
        "bob": {".vl-evaluate": True, ".vl-find-insights": True, ".vl-tags-row": True, "ingest": False},
        "ann": {".vl-evaluate": True, ".vl-find-insights": True, ".vl-tags-row": True, "ingest": True},
    }
    for user, expected in expectations.items():
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(team["url"] + "/login")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", PASSWORDS[user])
        page.locator("button, input[type=submit]").first.click()
        page.wait_for_load_state()
        page.goto(team["url"] + "/browse")
        page.wait_for_selector(".vl-tile img", timeout=60000)
        page.wait_for_selector(".vl-browse-toolbar", timeout=30000)  # the controls come with the tags row, if any
        assert (page.locator(".vl-tags-row").count() > 0) == expected[".vl-tags-row"], user
        page.locator(".bk-tab:text-is('Evaluation')").click()
        time.sleep(1.5)
        assert page.locator(".vl-evaluate").is_visible() == expected[".vl-evaluate"], user
        page.locator(".bk-tab:text-is('Insights')").click()
        time.sleep(1.5)
        assert page.locator(".vl-find-insights").is_visible() == expected[".vl-find-insights"], user
        page.locator(".bk-tab:text-is('Datasets')").click()
        page.wait_for_selector(".vl-jobs", timeout=30000)
        assert page.get_by_role("button", name="Ingest").is_visible() == expected["ingest"], user
        assert page.get_by_role("button", name="Delete…").is_visible() == expected["ingest"], user
        context.close()


def test_a_user_without_a_role_is_refused_page_and_api(team):
    text = team["roles_file"].read_text()
    try:
        team["roles_file"].write_text("users:\n  ann: admin\n  bob: editor\n")  # no default: val and zed have none
        os.utime(team["roles_file"], (time.time() + 5, time.time() + 5))
        zed = team["clients"]["zed"]
        page = zed.get("/browse")  # Panel's authorization callback answers before any session is built
        assert page.status_code == 403 and "not authorized" in page.text, page.text[:300]
        r = zed.get(API_PREFIX + "/datasets")
        assert r.status_code == 403 and "no role" in r.json()["error"]
        assert team["clients"]["ann"].get(API_PREFIX + "/datasets").status_code == 200
    finally:
        team["roles_file"].write_text(text)
        os.utime(team["roles_file"], (time.time() + 10, time.time() + 10))


def test_without_a_login_there_is_no_api_even_with_a_roles_file(team):
    assert httpx.get(team["url"] + API_PREFIX + "/datasets", timeout=30).status_code == 401
