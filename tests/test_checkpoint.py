import pytest
import torch

from fmnist import checkpoint, config, models
from fmnist.config import Config
from fmnist.errors import FmnistError
from fmnist.run_dir import model_path


def save_model(path, cfg):
    model = models.build(cfg)
    checkpoint.save(path, {"model": model.state_dict(), "config": config.to_dict(cfg), "epoch": 1})
    return model


def test_round_trip(tmp_path):
    model = save_model(tmp_path / "m.pt", Config(hidden=(16,)))
    loaded, cfg, state = checkpoint.load_model(tmp_path / "m.pt")
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x)) and cfg.hidden == (16,) and state["epoch"] == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "m.pt"]  # no temp file left behind


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(FmnistError, match="notes.pt: not a readable checkpoint"):
        checkpoint.load(path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(FmnistError, match="other.pt: not an fmnist checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


@pytest.mark.parametrize("content", [b"garbage\n", b"hello", b"", b"\x89PNG\r\n\x1a\n", b"\x08\x07\x12\x07pytorch"])
def test_a_file_torch_save_did_not_write_says_so_not_weights_only(tmp_path, content):
    """A text file, an image or an ONNX model given as the model: one line saying what the file is not and what
    fmnist loads, not torch.load's advice to retry with weights_only=False (b"garbage" unpickles far enough for
    that) nor a bare KeyError (b"hello")."""
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    for read in (checkpoint.load, checkpoint.load_model):
        with pytest.raises(FmnistError) as error:
            read(path)
        message = str(error.value)
        assert message.startswith(f"{path}: not a readable checkpoint: not a file torch.save writes"), message
        assert "weights_only" not in message and "KeyError" not in message and "fmnist loads" in message


def test_truncated_checkpoint(tmp_path):
    save_model(tmp_path / "m.pt", Config(hidden=(16,)))
    raw = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FmnistError, match="m.pt: not a readable checkpoint"):
        checkpoint.load_model(tmp_path / "m.pt")


def test_checkpoint_of_another_architecture(tmp_path):
    model = models.build(Config(hidden=(16,)))
    checkpoint.save(tmp_path / "m.pt", {"model": model.state_dict(), "config": config.to_dict(Config(hidden=(32,)))})
    with pytest.raises(FmnistError, match="weights do not fit the mlp architecture"):
        checkpoint.load_model(tmp_path / "m.pt")


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_code_carrying_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "model": Payload(str(marker))}, path)
    with pytest.raises(FmnistError, match="evil.pt: refused to load"):
        checkpoint.load(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # sanity: a full unpickle does run it
    assert marker.exists()


def test_missing_and_directory_without_checkpoints(tmp_path):
    with pytest.raises(FmnistError, match="checkpoint not found"):
        checkpoint.load(tmp_path / "nope.pt")
    with pytest.raises(FmnistError, match="no checkpoints/best.pt or checkpoints/last.pt"):
        model_path(tmp_path)
