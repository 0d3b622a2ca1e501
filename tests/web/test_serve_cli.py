"""genforge serve's refusals and its warning for a non-loopback address (no server is started)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the web demo needs the web extra: pip install 'genforge[web]'")
pytest.importorskip("uvicorn", reason="the web demo needs the web extra: pip install 'genforge[web]'")

from genforge.errors import GenforgeError  # noqa: E402
from genforge.web import is_loopback, serve  # noqa: E402


def test_serving_a_run_that_does_not_exist(cli, tmp_path):
    proc = cli("serve", "--run", tmp_path / "missing")
    assert proc.returncode == 2 and "not a genforge run directory" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                            ("example.org", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_other_hosts_are_served_with_a_warning(web_run_dirs, monkeypatch, capsys):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    serve([str(web_run_dirs["cgan"])], host="0.0.0.0", port=8123)
    assert calls and calls[0]["host"] == "0.0.0.0"
    assert "warning: serving on 0.0.0.0" in capsys.readouterr().err
    serve([str(web_run_dirs["cgan"])], host="127.0.0.1", port=8123)
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, words", [({"max_images": 0}, "--max-images"), ({"queue": -1}, "--queue"),
                                           ({"port": 70000}, "--port")])
def test_bad_settings_are_refused(web_run_dirs, kwargs, words):
    with pytest.raises(GenforgeError, match=words):
        serve([str(web_run_dirs["cgan"])], **kwargs)
