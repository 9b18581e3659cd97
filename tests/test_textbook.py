import torch
from torch import nn

from fmnist import training
from fmnist.bench import textbook
from fmnist.config import Config


class Recorder(nn.Module):
    """Notes which images pass through: image i carries i in its first pixel."""

    def __init__(self):
        super().__init__()
        self.seen: list[int] = []

    def forward(self, x):
        self.seen += (x[:, 0, 0, 0] * 255).round().long().tolist()
        return x


def test_textbook_and_fmnist_pipelines_see_each_image_once_per_epoch():
    n = 200  # not a multiple of the batch size: the last batch is short
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[:, 0, 0] = torch.arange(n, dtype=torch.uint8)
    labels = torch.arange(n) % 10
    seen = []
    for epoch in (textbook.textbook_epoch, textbook.fmnist_epoch):
        recorder = Recorder()
        model = nn.Sequential(recorder, nn.Flatten(), nn.Linear(784, 10))
        if epoch is textbook.textbook_epoch:
            epoch(model, images, labels, torch.device("cpu"), torch.Generator().manual_seed(0), batch_size=16)
        else:
            cfg = Config(batch_size=16)
            epoch(training.build_step_state(cfg, torch.device("cpu"), 13, model=model), cfg, images, labels)
        assert sorted(recorder.seen) == list(range(n))
        seen.append(recorder.seen)
    assert seen[0] != list(range(n)) and seen[1] != list(range(n))  # both shuffle
