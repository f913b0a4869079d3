"""Corpus text in encodings other than UTF-8 (issue 21): a byte-order mark is honoured, and
an undecodable byte is an error naming the file, the offset and the ways out."""

import pytest

from pyggml_train.cli import main
from pyggml_train.data import prepare, read_corpus

TEXT = "ROMEO: Wherefore art thou, Bianca? ´tis naïve.\n" * 20


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_a_byte_order_mark_picks_the_encoding(codec, tmp_path):
    path = tmp_path / "notepad.txt"
    data = TEXT.encode(codec)
    if codec == "utf-16-be":
        data = b"\xfe\xff" + data  # Python's utf-16-be writes no mark: add it as Notepad does
    path.write_bytes(data)
    assert read_corpus(path) == TEXT


def test_latin1_text_names_file_offset_and_the_fix(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(TEXT.encode("latin-1"))
    offset = TEXT.encode("latin-1").index(b"\xb4")
    with pytest.raises(ValueError) as err:
        read_corpus(path)
    message = str(err.value)
    assert str(path) in message and f"byte 0xb4 at offset {offset}" in message
    assert "--encoding NAME" in message and "--encoding lossy" in message
    assert read_corpus(path, "latin-1") == TEXT
    lossy = read_corpus(path, "lossy")
    assert lossy.count("\ufffd") == 2 * 20 and lossy.replace("\ufffd", "") == TEXT.replace(
        "´", ""
    ).replace("ï", "")


def test_an_unknown_encoding_is_a_clear_error(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    with pytest.raises(ValueError, match="unknown encoding 'klingon'.*latin-1"):
        read_corpus(path, "klingon")


def test_prepare_reads_a_utf16_file_like_its_utf8_twin(tmp_path):
    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "b.txt").write_text(TEXT, encoding="utf-16")
    a = prepare(tmp_path / "a.txt", tmp_path / "a", "char")
    b = prepare(tmp_path / "b.txt", tmp_path / "b", "char")
    assert (a.train_tokens, a.val_tokens) == (b.train_tokens, b.val_tokens)
    assert a.train_path.read_bytes() == b.train_path.read_bytes()


def test_cli_prepare_reports_the_byte_in_one_line_and_takes_encoding(tmp_path, capsys):
    path = tmp_path / "latin.txt"
    path.write_bytes(TEXT.encode("latin-1"))
    assert main(["prepare", "--data", str(path), "--out-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyggml-train prepare: error: ") and "\n" not in err
    assert "byte 0xb4" in err and str(path) in err
    argv = ["prepare", "--data", str(path), "--out-dir", str(tmp_path / "d"), "--encoding"]
    assert main([*argv, "cp1252"]) == 0
