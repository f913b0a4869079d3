"""Small files in each named dataset's real published format, registered under their
own checksums, and a loopback HTTP server to download them from: the real finding,
checking, downloading and parsing code runs on them, and nothing leaves the machine.

    write_wikitext(cache / "wikitext-2-raw-v1.zip", "wikitext-2-raw")
    register(monkeypatch, "wikitext-2", {"wikitext-2-raw-v1.zip": zip_bytes})
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

from pyggml_train import datasets

# WikiText raw: UTF-8, one paragraph per line, headings " = Title = " and " = = Section = = ",
# blank lines as " ", numbers and hyphens split as " @-@ " in the published text
WIKITEXT_TRAIN = (
    " \n = Valkyria Chronicles III = \n \n"
    " Senjō no Valkyria 3 : Unrecorded Chronicles is a tactical role @-@ playing game .\n"
    " \n = = Gameplay = = \n \n"
    " The game 's battle system , the BliTZ system , is carried over directly .\n \n"
)
WIKITEXT_VALID = (
    " \n = Homarus gammarus = \n \n"
    " Homarus gammarus , known as the European lobster , is a species of clawed lobster .\n \n"
)
WIKITEXT_TEST = " \n = Robert Boulter = \n \n Robert Boulter is an English actor .\n \n"

# Mikolov's PTB: lower case, one sentence per line with a leading space, <unk> for rare
# words and N for numbers
PTB_TRAIN = (
    " aer banknote berlitz calloway centrust cluett fromstein gitano guterman\n"
    " pierre <unk> N years old will join the board as a nonexecutive director nov. N\n"
    " mr. <unk> is chairman of <unk> n.v. the dutch publishing group\n"
)
PTB_VALID = (
    " consumers may want to move their telephones a little closer to the tv set\n"
    " <unk> <unk> watching abc 's monday night football can now vote during <unk>\n"
)


def wikitext_zip(folder: str) -> bytes:
    """A raw WikiText archive as published: ``folder/wiki.{train,valid,test}.raw``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for split, text in (("train", WIKITEXT_TRAIN), ("valid", WIKITEXT_VALID)):
            archive.writestr(f"{folder}/wiki.{split}.raw", text.encode("utf-8"))
        archive.writestr(f"{folder}/wiki.test.raw", WIKITEXT_TEST.encode("utf-8"))
    return buffer.getvalue()


def ptb_files() -> dict[str, bytes]:
    return {"ptb.train.txt": PTB_TRAIN.encode(), "ptb.valid.txt": PTB_VALID.encode()}


def register(monkeypatch, name: str, files: dict[str, bytes], url_base: str | None = None) -> None:
    """Record these bytes' SHA-256 and size for the dataset's files (and, with
    ``url_base``, their URL there) for the test: the registry entry otherwise stays."""
    ds = datasets.DATASETS[name]
    recorded = tuple(
        dataclasses.replace(
            f,
            sha256=hashlib.sha256(files[f.name]).hexdigest(),
            size=len(files[f.name]),
            url=f"{url_base}/{f.name}" if url_base else f.url,
        )
        for f in ds.files
    )
    monkeypatch.setitem(datasets.DATASETS, name, dataclasses.replace(ds, files=recorded))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``folder`` over HTTP on a free loopback port: (base URL, paths requested)."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
