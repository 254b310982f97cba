"""``/ui/``: the dashboard's files, served from the package with a strict policy."""

from __future__ import annotations

from importlib import resources

import pytest

from fleet.cluster.etcd import EtcdProcess
from tests.api.support import served_api
from tests.asyncsupport import async_test

STATIC = resources.files("fleet.api.ui") / "static"


@async_test
async def test_the_page_and_its_files_come_from_the_package(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        moved = await api.client.get("/ui")
        assert (moved.status_code, moved.headers["location"]) == (308, "/ui/")
        for path, name, kind in [
            ("/ui/", "index.html", "text/html"),
            ("/ui/app.js", "app.js", "text/javascript"),
            ("/ui/style.css", "style.css", "text/css"),
        ]:
            r = await api.client.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"].startswith(kind), path
            assert r.content == (STATIC / name).read_bytes(), path
            policy = r.headers["content-security-policy"]
            assert "default-src 'none'" in policy
            assert "script-src 'self'" in policy
            assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/..%2Fapp.py", "/ui/static/app.js"])
def test_nothing_else_is_served(etcd: EtcdProcess, etcd_prefix: str, path: str) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            r = await api.client.get(path)
            assert r.status_code == 404
            assert "error" in r.json()

    run()


def test_the_page_loads_nothing_from_elsewhere() -> None:
    page = (STATIC / "index.html").read_text()
    script = (STATIC / "app.js").read_text()
    for text in (page, script, (STATIC / "style.css").read_text()):
        assert "http://" not in text
        assert "https://" not in text
    assert "innerHTML" not in script  # API values only ever go through textContent
    assert '<script src="app.js">' in page
    assert "EventSource" in script
