"""Every command under a terminal that is not UTF-8 (a Latin-1 or ASCII locale, PYTHONIOENCODING): it
prints what the terminal can show ("?" for the rest) and finishes as it would anywhere; the files it
writes are UTF-8 whatever the locale."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from fmnist import cli, data
from fmnist.images import export_png

HERE = Path(__file__).parent
SUBCOMMANDS = [
    "train",
    "lr-find",
    "eval",
    "predict",
    "calibrate",
    "export",
    "data",
    "bench",
    "serve",
    "compare",
    "tune",
]


def fmnist(argv: list[str], encoding: str, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI in a child process whose standard streams use `encoding` (strict, as Python's default is)."""
    env = {
        **os.environ,
        "FMNIST_TEST_FILES": json.dumps(data.FILES),
        "OMP_NUM_THREADS": "1",
        "PYTHONIOENCODING": encoding,
        "LC_ALL": "C",  # file names stay UTF-8 (Python's UTF-8 mode under the C locale); the terminal does not
    }
    return subprocess.run(
        [sys.executable, str(HERE / "synthetic_cli.py"), *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=300,
    )


def clean(done: subprocess.CompletedProcess) -> str:
    err = done.stderr.decode("latin-1")
    assert "Traceback" not in err and "UnicodeEncodeError" not in err, err[-2000:]
    return err


def compare_prints_its_table(tmp_path: Path, encoding: str) -> None:  # in a child process, as workers are
    """The reported failure: compare's table has "—" and "±"; results.md is written as UTF-8."""
    experiment = tmp_path / "exp.toml"
    experiment.write_text(
        tomli_w.dumps({"seeds": [0], "threshold": 0.99, "base": {"epochs": 1, "hidden": [16], "val_size": 100}})
    )
    done = fmnist(["compare", str(experiment), "--out", str(tmp_path / "cmp")], encoding, tmp_path)
    clean(done)
    assert done.returncode == 0
    assert "—" in (tmp_path / "cmp" / "results.md").read_bytes().decode("utf-8")


@pytest.mark.slow
def test_compare_under_a_latin1_terminal(synthetic_data, tmp_path):
    compare_prints_its_table(tmp_path, "latin-1")


class Terminal:
    """Standard output and error as a terminal of `encoding` has them: strict, as Python's default is."""

    def __init__(self, monkeypatch, encoding: str):
        self.out, self.err = io.BytesIO(), io.BytesIO()
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(self.out, encoding=encoding))
        monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(self.err, encoding=encoding))
        monkeypatch.setenv("PYTHONIOENCODING", encoding)  # restored after the test: main() adds ":replace"

    def run(self, *argv: str) -> tuple[int, bytes, bytes]:
        start_out, start_err = len(self.out.getvalue()), len(self.err.getvalue())
        try:
            code = cli.main(list(argv))
        except SystemExit as e:  # --help
            code = int(e.code or 0)
        sys.stdout.flush()
        sys.stderr.flush()
        return code, self.out.getvalue()[start_out:], self.err.getvalue()[start_err:]


def test_every_command_prints_what_an_ascii_terminal_can_show(synthetic_data, tmp_path, monkeypatch, one_thread):
    terminal = Terminal(monkeypatch, "ascii")

    # train: a run directory named with letters the terminal lacks, in every line that names it
    run_dir = tmp_path / "Größe-ñ"
    code, out, err = terminal.run(
        "train", "--hidden", "16", "--epochs", "1", "--val-size", "0", "--no-progress", "--out", str(run_dir)
    )
    assert code == 0 and b"artifacts in " in out and b"Gr??e-?" in out, err

    # predict and eval --images: file and folder names
    photos = tmp_path / "fotos-été"
    (photos / "bag").mkdir(parents=True)
    export_png(data.load().test_images[0], photos / "bag" / "sac-à-main-👜.png")
    code, out, err = terminal.run("predict", str(run_dir), str(photos / "bag"))
    assert code == 0 and b"sac-?-main-?.png" in out, err
    code, out, err = terminal.run("eval", str(run_dir), "--images", str(photos))
    assert code == 0 and out, err

    # a one-line error naming a path the terminal cannot show
    code, out, err = terminal.run("train", "--config", str(tmp_path / "réglages-✓.toml"))
    assert code == 2 and err.startswith(b"fmnist: error:") and err.count(b"\n") == 1 and b"r?glages-?" in err

    # the help of every command
    for name in SUBCOMMANDS:
        code, out, err = terminal.run(name, "--help")
        assert code == 0 and out and not err, name
