"""Bare state dicts users bring: the PyTorch Quickstart network's and fmnist's own, through every command."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fmnist import checkpoint, models, state_dicts
from fmnist.cli import main
from fmnist.config import Config
from fmnist.data import as_input
from fmnist.errors import FmnistError
from fmnist.images import export_png
from fmnist.inference import load_predictor


class NeuralNetwork(nn.Module):
    """The network of the PyTorch Quickstart tutorial, as written there."""

    def __init__(self, hidden: tuple[int, int] = (512, 512)):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Linear(hidden[1], 10),
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits


def _images(count: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (count, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _to_tensor(images: torch.Tensor) -> torch.Tensor:
    """What torchvision's ToTensor() gives for 8-bit grayscale pictures: [N, 1, 28, 28], value / 255."""
    return images.unsqueeze(1).to(torch.float32).div(255)


@pytest.fixture
def quickstart(tmp_path):
    torch.manual_seed(0)
    model = NeuralNetwork()
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path)  # as the tutorial saves it
    return model.eval(), path


@pytest.mark.parametrize("hidden", [(512, 512), (128, 64)])
def test_quickstart_state_dict_answers_as_the_quickstart_model(tmp_path, hidden):
    torch.manual_seed(0)
    model = NeuralNetwork(hidden).eval()
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path)
    predictor = load_predictor(path)
    images = _images()
    with torch.no_grad():
        expected = model(_to_tensor(images))
    assert torch.equal(predictor.logits(images), expected)  # the same pixels, the same arithmetic
    layout = predictor.describe()["layout"]
    assert "PyTorch Quickstart" in layout and f"784-{hidden[0]}-{hidden[1]}-10" in layout
    assert "[0, 1]" in layout and "no normalisation" in layout


def test_general_checkpoint_of_the_quickstart_network(quickstart, tmp_path):
    # PyTorch's "Saving and loading a general checkpoint" recipe: the model's state dict beside the rest.
    model, _ = quickstart
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    path = tmp_path / "checkpoint.tar"
    torch.save(
        {
            "epoch": 5,
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "loss": torch.tensor(0.4),
        },
        path,
    )
    predictor = load_predictor(path)
    images = _images()
    with torch.no_grad():
        assert torch.equal(predictor.logits(images), model(_to_tensor(images)))
    layout = predictor.describe()["layout"]
    assert "PyTorch Quickstart" in layout and "'model_state_dict'" in layout


FMNIST_CONFIGS = [
    Config(),  # the reference mlp
    Config(hidden=(64, 32), batch_norm=True, dropout=0.3),  # dropout shifts the layer numbers
    Config(model="cnn", hidden=(4, 8), batch_norm=True),  # global average pooling, 2 convs per block
    Config(model="cnn", hidden=(4, 8, 8), convs=1, head=16, batch_norm=True, dropout=0.1),  # as the cnn preset
    Config(model="cnn", hidden=(4, 4), convs=2),  # equal widths: the blocks are told apart by the max-pools
]


@pytest.mark.parametrize("cfg", FMNIST_CONFIGS, ids=lambda c: f"{c.model}-{'-'.join(map(str, c.hidden))}")
@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod."])
def test_fmnist_bare_state_dict(tmp_path, cfg, prefix):
    torch.manual_seed(0)
    model = models.build(cfg)
    for module in model.modules():  # batch-norm statistics other than the initial ones
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.eval()
    path = tmp_path / "weights.pt"
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    loaded, loaded_cfg, state = checkpoint.load_model(path)
    images = _images()
    with torch.no_grad():
        assert torch.equal(loaded(as_input(images)), model(as_input(images)))
    assert (loaded_cfg.model, loaded_cfg.hidden, loaded_cfg.batch_norm) == (cfg.model, cfg.hidden, cfg.batch_norm)
    assert "ReLU assumed" in state["layout"]


@pytest.mark.parametrize(
    "content",
    [
        {"fc1.weight": torch.zeros(128, 784), "fc1.bias": torch.zeros(128)},  # another network's names
        {
            "linear_relu_stack.0.weight": torch.zeros(512, 100),
            "linear_relu_stack.0.bias": torch.zeros(512),  # 10x10
            "linear_relu_stack.2.weight": torch.zeros(10, 512),
            "linear_relu_stack.2.bias": torch.zeros(10),
        },
        {
            "1.weight": torch.zeros(64, 784),
            "1.bias": torch.zeros(64),
            "3.weight": torch.zeros(7, 64),
            "3.bias": torch.zeros(7),
        },  # 7 classes
        [torch.zeros(3)],  # not a dict
        {"epoch": 3},  # a dict, not of tensors
    ],
)
def test_anything_else_says_what_fmnist_loads(tmp_path, content):
    path = tmp_path / "other.pth"
    torch.save(content, path)
    with pytest.raises(FmnistError) as info:
        checkpoint.load_model(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert state_dicts.LOADABLE in message


def test_eval_predict_export_and_serve_take_a_quickstart_state_dict(quickstart, synthetic_data, tmp_path, capsys):
    model, path = quickstart
    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    images[:, 4:24, 6:22] = _images(3)[:, 4:24, 6:22]  # a dark border: taken as they are, not re-framed
    for i, image in enumerate(images):
        export_png(image, tmp_path / f"img{i}.png")
    assert main(["predict", str(path), str(tmp_path / "img0.png"), str(tmp_path / "img1.png"), "--json"]) == 0
    out, err = capsys.readouterr()
    with torch.no_grad():
        expected = model(_to_tensor(images[:2])).softmax(1)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["class_index"] for r in rows] == expected.argmax(1).tolist()
    assert [r["probability"] for r in rows] == pytest.approx(expected.max(1).values.tolist(), abs=1e-6)
    assert "PyTorch Quickstart" in err and "[0, 1]" in err and len(err.strip().splitlines()) == 1

    assert main(["eval", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert 0 <= json.loads(out)["test_accuracy"] <= 1 and "PyTorch Quickstart" in err

    onnx = tmp_path / "quickstart.onnx"
    assert main(["export", str(path), "--out", str(onnx)]) == 0
    capsys.readouterr()
    facts = json.loads(onnx.with_suffix(".json").read_text())
    assert facts["test"]["same_prediction"] == 1.0 and "PyTorch Quickstart" in facts["source"]["layout"]
    assert torch.equal(load_predictor(onnx).logits(images).argmax(1), model(_to_tensor(images)).argmax(1))

    from fastapi.testclient import TestClient

    from fmnist.serve.app import create_app
    from fmnist.serve.limits import Limits

    with TestClient(create_app(load_predictor(path), Limits())) as client:  # what fmnist serve runs
        assert "PyTorch Quickstart" in client.get("/healthz").json()["layout"]


def test_calibrate_refuses_a_state_dict_whose_training_images_are_unknown(quickstart, synthetic_data, capsys):
    _, path = quickstart  # trained on who knows which images: none of them may serve as a validation split
    assert main(["calibrate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no validation split on record" in err and len(err.strip().splitlines()) == 1
