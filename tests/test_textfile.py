"""Every text file fmnist reads, in the forms other tools save: read as meant, or refused in one line
that names the file and what is wrong (textfile.read, the one reader behind them all)."""

import codecs
import hashlib
import json

import pytest

from fmnist import config, textfile
from fmnist.errors import FmnistError
from fmnist.inference import ONNX_FORMAT, read_sidecar
from fmnist.run_dir import RunDir
from fmnist.serve import access
from fmnist.studies import compare, tune

KEY_A, KEY_B = "k" * 20, "secret-key-number-2"
MODEL_BYTES = b"an onnx graph"


def keys_file(path):
    return access.read_keys(path)


def config_file(path):
    return config.read_toml(path)


def experiment_file(path):
    return compare.read_experiment(path)


def study_settings(path):
    return tune.load_settings(path.parent)


def run_summary(path):
    return RunDir(path.parent).read_summary()


def run_metrics(path):
    return RunDir(path.parent).read_history()


def export_sidecar(path):
    return read_sidecar(path.with_suffix(".onnx"), MODEL_BYTES)


# Each reader, the file name it reads, its content, and whether its format has # comments and blank lines.
READERS = {
    "API key file": (keys_file, "keys.txt", f"{KEY_A}\n{KEY_B}\n", True),
    "config TOML": (config_file, "c.toml", 'model = "cnn"\nhidden = [16, 32]\nlr = 0.01\n', True),
    "experiment file": (
        experiment_file,
        "e.toml",
        "seeds = [0, 1]\n[base]\nepochs = 2\n[grid]\nlr = [0.1, 0.01]\n",
        True,
    ),
    "study settings": (
        study_settings,
        tune.STUDY_FILE,
        json.dumps({"name": "s", "storage": "", "base": {"epochs": 2}}, indent=1) + "\n",
        False,
    ),
    "run summary": (
        run_summary,
        "summary.json",
        json.dumps({"test_accuracy": 0.5, "epochs": 1}, indent=1) + "\n",
        False,
    ),
    "run metrics": (
        run_metrics,
        "metrics.jsonl",
        '{"epoch": 1, "test_acc": 0.5}\n{"epoch": 2, "test_acc": 0.6}\n',
        False,
    ),
    "export sidecar": (
        export_sidecar,
        "m.json",
        json.dumps({"format": ONNX_FORMAT, "onnx_sha256": hashlib.sha256(MODEL_BYTES).hexdigest()}, indent=1) + "\n",
        False,
    ),
}

FORMS = {
    "UTF-8 with BOM": lambda text: codecs.BOM_UTF8 + text.encode(),
    "CRLF": lambda text: text.replace("\n", "\r\n").encode(),
    "CR": lambda text: text.replace("\n", "\r").encode(),
    "UTF-16 LE with BOM": lambda text: codecs.BOM_UTF16_LE + text.replace("\n", "\r\n").encode("utf-16-le"),
    "UTF-16 BE with BOM": lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
    "UTF-32 with BOM": lambda text: text.encode("utf-32"),
    "no final newline, trailing spaces": lambda text: "\n".join(
        line + " \t" for line in text.split("\n")[:-1]
    ).encode(),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("reader", READERS)
def test_every_text_file_reads_the_same_in_every_form_people_save(tmp_path, reader, form):
    read, name, text, _ = READERS[reader]
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / name).write_bytes(text.encode())
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / name).write_bytes(FORMS[form](text))
    assert read(tmp_path / "other" / name) == read(tmp_path / "plain" / name)


@pytest.mark.parametrize("reader", [r for r in READERS if READERS[r][3]])
def test_comments_and_blank_lines_are_read_as_meant(tmp_path, reader):
    read, name, text, _ = READERS[reader]
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / name).write_text(text, encoding="utf-8")
    (tmp_path / "commented").mkdir()
    commented = "# written by hand\n\n" + "\n\n".join(
        f"  {line}   # note" if "=" in line else f"  {line}  " for line in text.split("\n")
    )
    if reader == "API key file":  # a key file has whole-line comments only
        commented = "# written by hand\n\n" + "\n   \n".join(f"\t{line}  " for line in text.split("\n"))
    (tmp_path / "commented" / name).write_text(commented, encoding="utf-8")
    assert read(tmp_path / "commented" / name) == read(tmp_path / "plain" / name)


BAD = {
    "Latin-1": (lambda text: (text.rstrip("\n") + " # café\n").encode("latin-1"), "not UTF-8 text (byte 0xe9"),
    "UTF-16 without a BOM": (lambda text: text.encode("utf-16-le"), "looks like UTF-16 without a byte-order mark"),
    "binary": (lambda text: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "it looks like a binary file"),
    "UTF-16 with a BOM, then broken": (lambda text: codecs.BOM_UTF16_LE + b"a\x00\x00\xd8", "not UTF-16 text"),
}


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("reader", READERS)
def test_what_cannot_be_read_as_meant_is_one_line_naming_the_file(tmp_path, reader, bad):
    read, name, text, _ = READERS[reader]
    make, message = BAD[bad]
    path = tmp_path / name
    path.write_bytes(make(text))
    with pytest.raises(FmnistError) as caught:
        read(path)
    assert str(path) in str(caught.value) and message in str(caught.value) and "\n" not in str(caught.value)


def test_an_api_key_file_with_a_bom_gives_its_first_key(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_bytes(codecs.BOM_UTF8 + f"{KEY_A}\r\n{KEY_B}\r\n".encode())
    assert access.read_keys(path) == (KEY_A, KEY_B)


def test_files_read_the_same_under_any_locale_encoding(tmp_path, monkeypatch):
    import locale

    path = tmp_path / "c.toml"
    path.write_bytes('model = "cnn" # Größe\n'.encode())
    monkeypatch.setattr(locale, "getpreferredencoding", lambda *a, **k: "ascii")
    assert textfile.read(path).startswith('model = "cnn"')
