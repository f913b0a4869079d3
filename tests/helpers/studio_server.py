"""A real studio server for tests: create_app on uvicorn, on a free loopback port, in a thread.

with running_studio(tmp_path) as base:   # "http://127.0.0.1:PORT"
    httpx.get(base + "/api/node-types")
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from helpers.env import SHARED, require

CORPUS = SHARED / "data" / "tinyshakespeare.txt"


def require_studio() -> None:
    """The web stack (the studio extra) and the npm assets; skip (or fail in CI) without them."""
    import importlib.util

    mods = ("starlette", "uvicorn", "websockets", "httpx")
    missing = [m for m in mods if importlib.util.find_spec(m) is None]
    require(
        not missing,
        f"the studio's web stack is missing ({', '.join(missing)}): pip install '.[test]'",
    )
    from pyggml_train.studio import assets

    require(not assets.missing(), assets.how_to_fetch())


def seed_data_dir(root: Path) -> Path:
    """A studio data dir whose data/ holds tiny shakespeare (so nothing is downloaded)."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(CORPUS, root / "data" / CORPUS.name)
    return root


@contextlib.contextmanager
def running_studio(data_dir: Path) -> Iterator[str]:
    """Serve create_app(data_dir) until the block ends; yields the base URL."""
    import uvicorn

    from pyggml_train.studio.app import create_app

    config = uvicorn.Config(create_app(data_dir), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="studio-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the studio test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextlib.contextmanager
def studio_client(root: Path, timeout: float = 30) -> Iterator:
    """An httpx client of a studio serving ``root`` (seeded with tiny shakespeare); the
    client also carries ``root`` and ``ws_base`` (the server's base URL, for WebSockets)."""
    require_studio()
    seed_data_dir(root)
    with running_studio(root) as base:
        import httpx

        with httpx.Client(base_url=base, timeout=timeout) as client:
            client.root, client.ws_base = root, base
            yield client
