"""fmnist export and the onnxruntime predictor: parity with PyTorch, the uint8 contract, the sidecar, int8
calibration on training images only, and every user mistake as one line."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime.quantization
import pytest
import torch
from support import heavy_modules_of, synthetic_arrays

from fmnist import checkpoint, data, export, models
from fmnist import config as config_lib
from fmnist.cli import main
from fmnist.data import FashionMNIST, as_input
from fmnist.errors import FmnistError
from fmnist.evaluate import evaluate, evaluate_logits
from fmnist.inference import OnnxPredictor, TorchPredictor, load_predictor, open_onnx, probabilities, sidecar_path
from fmnist.inference import probabilities as probabilities_of  # where a test names its array `probabilities`

CONFIGS = {
    "mlp": {"hidden": (48, 24)},
    "cnn": {"model": "cnn", "hidden": (4, 8), "batch_norm": True, "dropout": 0.1},  # global average pooling
    "cnn-head": {"model": "cnn", "hidden": (4, 8), "convs": 1, "head": 16, "batch_norm": True},  # flattens NCHW
}


@pytest.fixture(autouse=True)
def _threads(one_thread):
    pass


def synthetic_dataset() -> FashionMNIST:
    a = {k: torch.from_numpy(v) for k, v in synthetic_arrays().items()}
    return FashionMNIST(
        a["train_images"],
        a["train_labels"].long(),
        a["test_images"],
        a["test_labels"].long(),
        Path("synthetic"),
        "test",
    )


def save_model(path: Path, values: dict, seed: int = 0) -> torch.nn.Module:
    """A checkpoint of an untrained model of `values`, batch-norm statistics made non-trivial."""
    cfg = config_lib.from_dict(values)
    torch.manual_seed(seed)
    model = models.build(cfg)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    checkpoint.save(path, {"model": model.state_dict(), "config": config_lib.to_dict(cfg), "epoch": 3})
    return model.eval()


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, tuple[Path, Path, torch.nn.Module, dict]]:
    """One fp32 export per model kind: (checkpoint, onnx file, PyTorch model, sidecar)."""
    torch.set_num_threads(1)
    directory, dataset, made = tmp_path_factory.mktemp("exports"), synthetic_dataset(), {}
    for name, values in CONFIGS.items():
        ckpt = directory / f"{name}.pt"
        model = save_model(ckpt, values)
        facts = export.export(export.load_source(ckpt), directory / f"{name}.onnx", dataset)
        made[name] = (ckpt, directory / f"{name}.onnx", model, facts)
    return made


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("batch", [1, 37])
def test_logits_match_pytorch_at_any_batch_size(exports, name, batch):
    _, onnx_path, model, _ = exports[name]
    images = torch.randint(0, 256, (batch, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        expected = model(as_input(images))
    got = open_onnx(onnx_path).logits(images)
    assert got.shape == (batch, 10) and got.dtype == torch.float32
    assert (got - expected).abs().max().item() <= 1e-4


def test_the_graph_takes_uint8_pixels_and_scales_them_itself(exports):
    _, onnx_path, model, _ = exports["mlp"]
    predictor = open_onnx(onnx_path)
    (spec,) = predictor.runtime.get_inputs()
    assert spec.type == "tensor(uint8)" and spec.shape[1:] == [28, 28] and isinstance(spec.shape[0], str)
    images = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    with torch.inference_mode():
        scaled, unscaled = model(as_input(images)), model(images.float().view(2, 1, 28, 28))
    got = predictor.logits(images)
    assert torch.allclose(got, scaled, atol=1e-5) and not torch.allclose(got, unscaled, atol=1e-2)
    assert torch.equal(predictor.logits(images.view(2, 1, 28, 28)), got)  # [N, 1, 28, 28] as as_input takes
    with pytest.raises(TypeError, match="uint8"):
        predictor.logits(images.float())


@pytest.mark.parametrize("name", CONFIGS)
def test_sidecar_describes_the_export_and_its_source(exports, name):
    ckpt, onnx_path, model, facts = exports[name]
    on_disk = json.loads(sidecar_path(onnx_path).read_text())
    assert on_disk == facts and sidecar_path(onnx_path).name == f"{name}.json"
    assert facts["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert facts["source"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert facts["source"]["config"] == config_lib.to_dict(config_lib.from_dict(CONFIGS[name]))
    assert facts["source"]["epoch"] == 3 and facts["precision"] == "fp32" and facts["quantization"] is None
    assert facts["classes"] == list(data.CLASSES) and facts["opset"] == export.OPSET
    assert facts["input"]["dtype"] == "uint8" and facts["input"]["shape"] == ["batch", 28, 28]
    dataset = synthetic_dataset()
    reference = evaluate(model, dataset.test_images, dataset.test_labels)
    assert facts["test"]["images"] == len(dataset.test_labels)
    assert facts["test"]["accuracy"] == reference.accuracy == facts["test"]["pytorch_accuracy"]
    assert facts["test"]["loss"] == pytest.approx(reference.loss, rel=1e-5)


def test_load_predictor_picks_onnxruntime_for_onnx_files(exports):
    ckpt, onnx_path, _, _ = exports["cnn"]
    onnx_predictor, torch_predictor = load_predictor(onnx_path), load_predictor(ckpt)
    assert isinstance(onnx_predictor, OnnxPredictor) and isinstance(torch_predictor, TorchPredictor)
    facts = onnx_predictor.describe()
    assert facts["format"] == "onnx" and facts["precision"] == "fp32" and facts["model"] == "cnn"
    images = torch.from_numpy(synthetic_arrays()["test_images"][:20])
    onnx_probabilities = probabilities(onnx_predictor, images)
    assert torch.allclose(onnx_probabilities.sum(1), torch.ones(20), atol=1e-5)
    assert torch.allclose(onnx_probabilities, probabilities(torch_predictor, images), atol=1e-5)


def test_a_sidecar_of_another_model_is_refused(exports, tmp_path):
    _, onnx_path, _, _ = exports["mlp"]
    _, other_onnx, _, _ = exports["cnn"]
    copy = tmp_path / "model.onnx"
    copy.write_bytes(onnx_path.read_bytes())
    sidecar_path(copy).write_text(sidecar_path(other_onnx).read_text())
    with pytest.raises(FmnistError, match="describes another model file"):
        open_onnx(copy)
    sidecar_path(copy).write_text("{not json")
    with pytest.raises(FmnistError, match="not a readable sidecar"):
        open_onnx(copy)


def test_a_file_onnxruntime_cannot_read_is_one_error(exports, tmp_path):
    _, onnx_path, _, facts = exports["mlp"]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(onnx_path.read_bytes()[:5000])  # truncated
    digest = hashlib.sha256(broken.read_bytes()).hexdigest()
    sidecar_path(broken).write_text(json.dumps({**facts, "onnx_sha256": digest}))
    with pytest.raises(FmnistError, match="onnxruntime cannot load it"):
        open_onnx(broken)


def test_int8_calibrates_on_training_images_only(tmp_path, monkeypatch):
    """Every image the calibrator is fed is a training image and none is a test image: a spy on
    onnxruntime's quantize_static drains the reader it is given."""
    fed: list[np.ndarray] = []
    real = onnxruntime.quantization.quantize_static

    class Replay(onnxruntime.quantization.CalibrationDataReader):
        def __init__(self, batches):
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    def spy(model_input, model_output, calibration_data_reader, **kwargs):
        batches = list(iter(calibration_data_reader.get_next, None))
        fed.extend(b["pixels"] for b in batches)
        return real(model_input, model_output, Replay(batches), **kwargs)

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", spy)
    dataset = synthetic_dataset()
    save_model(tmp_path / "m.pt", CONFIGS["cnn-head"])
    facts = export.export(
        export.load_source(tmp_path / "m.pt"), tmp_path / "m.onnx", dataset, int8=True, calibration_images=300
    )
    images = np.concatenate(fed)
    train = {img.tobytes() for img in dataset.train_images.numpy()}
    test = {img.tobytes() for img in dataset.test_images.numpy()}
    assert len(images) == 300 == facts["quantization"]["calibration_images"]
    assert all(img.tobytes() in train for img in images)
    assert not any(img.tobytes() in test for img in images)
    assert facts["precision"] == "int8" and open_onnx(tmp_path / "m.onnx").describe()["precision"] == "int8"
    (first_conv,) = facts["quantization"]["kept_fp32"]  # the cnn's first convolution stays fp32
    assert first_conv.endswith("model.0/Conv")


def test_calibration_sample_is_stratified_and_within_the_training_set():
    labels = torch.from_numpy(synthetic_arrays()["train_labels"]).long()
    picked = export.calibration_indices(labels, 200)
    assert len(picked) == len(set(picked.tolist())) == 200 and picked.max() < len(labels)
    assert data.class_counts(labels[picked]) == [20] * 10
    with pytest.raises(FmnistError, match="between 100"):
        export.calibration_indices(labels, len(labels))


def test_a_graph_that_disagrees_with_pytorch_is_not_written(tmp_path, monkeypatch):
    dataset = synthetic_dataset()
    save_model(tmp_path / "m.pt", CONFIGS["mlp"])
    source = export.load_source(tmp_path / "m.pt")
    real = export.to_onnx

    def off_by_a_little(model, path):  # the exported graph's last bias nudged by 1e-3
        model = copy.deepcopy(model)
        with torch.no_grad():
            model[-1].bias.add_(1e-3)
        real(model, path)

    monkeypatch.setattr(export, "to_onnx", off_by_a_little)
    with pytest.raises(FmnistError, match="differ from PyTorch's"):
        export.export(source, tmp_path / "m.onnx", dataset)
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.json").exists()


# ---- the command line ------------------------------------------------------------------------


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_and_eval_from_the_command_line(synthetic_data, tmp_path, capsys):
    model = save_model(tmp_path / "m.pt", CONFIGS["mlp"])
    code, out, err = run(capsys, "export", tmp_path / "m.pt", "--out", tmp_path / "out" / "m.onnx")
    assert code == 0, err
    assert "wrote" in out and "m.json" in out and "test accuracy" in out
    code, onnx_out, _ = run(capsys, "eval", tmp_path / "out" / "m.onnx")
    code_pt, pt_out, _ = run(capsys, "eval", tmp_path / "m.pt")
    assert code == code_pt == 0 and onnx_out == pt_out  # same metrics, same text
    reference = evaluate(model, data.load().test_images, data.load().test_labels)
    assert f"test set: accuracy {reference.accuracy:.2%}" in onnx_out
    _, onnx_json, _ = run(capsys, "eval", tmp_path / "out" / "m.onnx", "--json")
    _, pt_json, _ = run(capsys, "eval", tmp_path / "m.pt", "--json")
    onnx_result, pt_result = json.loads(onnx_json), json.loads(pt_json)
    assert onnx_result.keys() == pt_result.keys()
    assert onnx_result["confusion_matrix"] == pt_result["confusion_matrix"]
    assert onnx_result["test_loss"] == pytest.approx(pt_result["test_loss"], rel=1e-5)


@pytest.mark.parametrize(
    "source, out, message",
    [
        ("notes.txt", "m.onnx", "not a file torch.save writes"),
        ("missing.pt", "m.onnx", "checkpoint not found"),
        ("empty-run", "m.onnx", "no checkpoints/best.pt"),
        ("m.pt", "m.pt", "must end in .onnx"),
        ("m.pt", "dir.onnx", "is a directory"),
        ("m.pt", "blocker/m.onnx", "cannot write in"),
        ("m.pt", "m.onnx --int8 --calibration-images 0", "must be between 100"),
        ("m.pt", "m.onnx --int8 --calibration-images 1", "must be between 100"),
        ("m.pt", "m.onnx --int8 --calibration-images 99", "must be between 100"),
        ("exported.onnx", "m.onnx", "already an export; export the checkpoint or run it came from"),
    ],
)
def test_export_mistakes_are_one_line(synthetic_data, tmp_path, capsys, source, out, message):
    save_model(tmp_path / "m.pt", CONFIGS["mlp"])
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    (tmp_path / "exported.onnx").write_bytes(b"an export, as far as its name says")
    (tmp_path / "empty-run").mkdir()
    (tmp_path / "dir.onnx").mkdir()
    (tmp_path / "blocker").write_text("a file where a directory should be")
    out_path, *flags = out.split()
    code, _, err = run(capsys, "export", tmp_path / source, "--out", tmp_path / out_path, *flags)
    assert code == 2 and err.count("\n") == 1 and err.startswith("fmnist: error:") and message in err, err
    assert not list(tmp_path.glob("*.json")) and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "model not found"),
        ("not onnx", "onnxruntime cannot load it"),
        ("no sidecar, no metadata", "no m.json beside it and no fmnist metadata in it"),
    ],
)
def test_eval_mistakes_with_onnx_are_one_line(synthetic_data, tmp_path, capsys, setup, message):
    if setup == "not onnx":
        (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
    if setup.startswith("no sidecar"):  # a graph as exports were before they carried their facts
        export.to_onnx(save_model(tmp_path / "m.pt", CONFIGS["mlp"]), tmp_path / "m.onnx")
    code, _, err = run(capsys, "eval", tmp_path / "m.onnx")
    assert code == 2 and err.count("\n") == 1 and message in err, err


# ---- the real data ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    """A one-hidden-layer MLP trained for a few seconds on 20,000 real training images (about 82 % on test),
    saved as a checkpoint; and the real data."""
    found = data.locate()
    if found is None:
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    torch.set_num_threads(1)
    dataset = data.load()
    cfg = config_lib.from_dict({"hidden": (128,)})
    torch.manual_seed(0)
    model = models.build(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for batch in torch.randperm(20_000, generator=torch.Generator().manual_seed(0)).split(128):
        logits = model(as_input(dataset.train_images[batch]))
        loss = torch.nn.functional.cross_entropy(logits, dataset.train_labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("real-export") / "mlp.pt"
    checkpoint.save(path, {"model": model.state_dict(), "config": config_lib.to_dict(cfg), "epoch": 1})
    return export.load_source(path), dataset


@pytest.mark.real_data
def test_fp32_export_matches_pytorch_on_the_whole_test_set(real_model, tmp_path):
    source, dataset = real_model
    facts = export.export(source, tmp_path / "m.onnx", dataset)
    with torch.inference_mode():
        expected = source.model(as_input(dataset.test_images))
    got = open_onnx(tmp_path / "m.onnx").logits(dataset.test_images)
    assert (got - expected).abs().max().item() <= 1e-4
    assert torch.equal(got.argmax(1), expected.argmax(1))
    accuracy = (expected.argmax(1) == dataset.test_labels).float().mean().item()
    assert facts["test"]["accuracy"] == facts["test"]["pytorch_accuracy"] == accuracy > 0.75


# The target, int8 at most 0.3 point below fp32, is measured on the reference model (docs/PREDICT.md).
# This few-seconds model has less settled logits, so the bound here is looser; calibrating on blank images,
# a broken quantization, misses it by far (about 20 points).
INT8_MAX_DROP = 0.005


@pytest.mark.real_data
def test_int8_export_keeps_accuracy_and_a_broken_calibration_does_not(real_model, tmp_path):
    source, dataset = real_model
    facts = export.export(source, tmp_path / "m.onnx", dataset, int8=True)
    fp32 = facts["test"]["pytorch_accuracy"]
    assert facts["test"]["accuracy"] >= fp32 - INT8_MAX_DROP
    blank, _ = export.onnx_bytes(source.model, np.zeros((500, 28, 28), np.uint8))
    broken = evaluate_logits(OnnxPredictor(blank, "blank", {}).logits, dataset.test_images, dataset.test_labels)
    assert broken.accuracy < fp32 - INT8_MAX_DROP


def test_an_int8_export_fits_the_checkpoints_own_cues_and_gate_again(monkeypatch):
    from types import SimpleNamespace

    from fmnist import trust

    asked = []
    monkeypatch.setattr(trust, "fit", lambda *args, **options: asked.append(options) or trust.UNFITTED)
    cues = {name: np.zeros(3) for name in ("energy", "coarse", "fill")}  # as `fmnist calibrate --cues` stores them
    source = SimpleNamespace(trust=trust.Trust(1.5, cues, 0.015, gate=1.0), config=config_lib.Config(val_size=400))
    export.trust_of_export(source, SimpleNamespace(logits=None), synthetic_dataset(), int8=True)  # type: ignore[arg-type]
    source.trust = trust.Trust(1.5, {}, 0.0)  # a temperature and no detector: the default detector
    export.trust_of_export(source, SimpleNamespace(logits=None), synthetic_dataset(), int8=True)  # type: ignore[arg-type]
    assert asked == [{"gate": 1.0, "cues": ("energy", "coarse", "fill")}, {}]
    assert trust.Trust(1.5, cues, 0.015).describe()["ood_detector"] == "energy + coarse + fill"
    plain = {"energy": np.zeros(3), "coarse": np.zeros(3)}
    meaning = export.output_facts(trust.Trust(1.5, cues, 0.015, plain, {"plain": np.zeros(3)}))[-1]["meaning"]
    assert "energy" in meaning and "4x4 blocks" in meaning and "span" not in meaning  # the cues it was fitted on


def test_the_temperature_and_detector_travel_in_the_sidecar(tmp_path):
    from fmnist import trust
    from fmnist.inference import TorchPredictor

    model_path = tmp_path / "m.pt"
    save_model(model_path, CONFIGS["mlp"])
    state = checkpoint.load(model_path)
    state[trust.KEY] = trust.Trust(1.7, {"energy": np.linspace(-1, 5, 40)}, 0.03).to_dict()
    checkpoint.save(model_path, state)
    facts = export.export(export.load_source(model_path), tmp_path / "m.onnx", synthetic_dataset())
    assert facts[trust.KEY]["temperature"] == 1.7
    onnx, torch_predictor = open_onnx(tmp_path / "m.onnx"), TorchPredictor(model_path)
    assert onnx.trust.threshold == 0.03 and onnx.describe()["calibrated"] is True
    images = synthetic_dataset().test_images[:16]
    assert torch.allclose(probabilities(onnx, images), probabilities(torch_predictor, images), atol=1e-5)
    assert np.allclose(
        onnx.trust.scores(onnx.logits(images), images, [None] * 16),
        torch_predictor.trust.scores(torch_predictor.logits(images), images, [None] * 16),
    )


# ---- the facts inside the graph ----------------------------------------------------------------


def dark_bordered(images: torch.Tensor) -> torch.Tensor:
    """The images with a black border two pixels wide and their levels stretched to reach 255, as every dataset
    image's do, which any reader takes for the dataset's own format."""
    images = images.clone()
    images[:, :2], images[:, -2:], images[:, :, :2], images[:, :, -2:] = 0, 0, 0, 0
    peaks = images.flatten(1).amax(1).clamp(min=1).float()[:, None, None]
    return (images.float() * (255 / peaks)).round().to(torch.uint8)


def trusted_model(path: Path, earlier: bool = False, gate: float | None = None) -> Path:
    """A checkpoint with a temperature and a detector of the form trust.fit makes, whose plain references (energy
    and view cues) and held-out unusualness come from the synthetic model's own images, so that scores vary; `earlier`:
    a detector of the form fitted before the view cues (energy references alone); `gate`: under which its second
    smallest p-value counts (default ood.GATE)."""
    save_model(path, CONFIGS["mlp"])
    state = checkpoint.load(path)
    from fmnist import trust

    dataset = synthetic_dataset()
    images = dark_bordered(dataset.train_images[:600])  # as the plain script's test saves them
    basis = trust.ood.basis_of(images.numpy()[0::2])
    gaussians = trust.ood.gaussians_of(dataset.train_images[600:1200].numpy(), dataset.train_labels[600:1200].numpy())
    logits = TorchPredictor(path).logits(images)
    values = trust.cue_values(logits, images, [None] * len(images), basis, gaussians)
    cues = ("energy", *trust.ood.VIEW_CUES, "residual", "coarse")
    fitted = trust.ood.fitted(values, values, cues, gate=trust.ood.GATE if gate is None else gate)
    detector = trust.Trust(
        1.7, fitted["references"], 0.2, fitted["plain"], fitted["held_out"], basis, gaussians, fitted["gate"]
    )
    if earlier:
        detector = trust.Trust(1.7, {"energy": np.sort(values["energy"])}, 0.2)
    state[trust.KEY] = detector.to_dict()
    checkpoint.save(path, state)
    return path


def test_the_onnx_file_alone_carries_labels_temperature_and_detector(tmp_path):
    import onnxruntime as ort

    facts = export.export(
        export.load_source(trusted_model(tmp_path / "m.pt")), tmp_path / "m.onnx", synthetic_dataset()
    )
    runtime = ort.InferenceSession(str(tmp_path / "m.onnx"))
    meta = runtime.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == list(data.CLASSES) and json.loads(meta["temperature"]) == 1.7
    assert json.loads(meta["ood_threshold"]) == 0.2 and json.loads(meta["trust"]) == facts["trust"]
    assert json.loads(meta["training_data_sha256"])["train_images"] == data.FILES["train_images"][1]
    assert [o.name for o in runtime.get_outputs()] == ["logits", "probabilities", "in_distribution_score"]
    sidecar_path(tmp_path / "m.onnx").unlink()  # fmnist reads the same facts from the graph
    alone = open_onnx(tmp_path / "m.onnx")
    assert alone.facts == {k: v for k, v in facts.items() if k not in ("onnx_file", "onnx_sha256")}
    assert alone.describe()["calibrated"] is True and alone.trust.threshold == 0.2


@pytest.mark.parametrize(
    ("earlier", "gate"),
    [(False, None), (False, 0.0), (False, 1.0), (True, None)],
    ids=["fitted", "no-gate", "gate-1", "earlier-form"],
)
def test_the_graph_scores_as_the_detector_does_for_28x28_images(tmp_path, monkeypatch, earlier, gate):
    import onnx
    import onnxruntime as ort

    from fmnist.trust import ood

    model_path = trusted_model(tmp_path / "m.pt", earlier, gate)
    export.export(export.load_source(model_path), tmp_path / "m.onnx", synthetic_dataset())
    stored_gate = TorchPredictor(model_path).trust.gate
    assert stored_gate == (0.0 if earlier else ood.GATE if gate is None else gate)
    ops = {node.op_type for node in onnx.load(tmp_path / "m.onnx").graph.node}
    assert ("TopK" in ops) == (stored_gate > 0)
    images = dark_bordered(synthetic_dataset().test_images)  # of the references' kind, so that scores spread
    probabilities, scores = ort.InferenceSession(str(tmp_path / "m.onnx")).run(
        ["probabilities", "in_distribution_score"], {"pixels": images.numpy()}
    )
    reference = TorchPredictor(model_path)
    logits = reference.logits(images)
    expected = reference.trust.scores(logits, images, [None] * len(images))
    assert len(np.unique(expected)) > 20  # the scores spread over the references
    assert np.abs(scores - expected).max() < 1e-6
    assert np.abs(probabilities - probabilities_of(reference, images).numpy()).max() < 1e-6
    if not earlier and stored_gate:  # the sharpness is second only for these images, and that moves some scores
        monkeypatch.setattr(ood, "SECOND_ONLY", ())
        assert np.abs(reference.trust.scores(logits, images, [None] * len(images)) - expected).max() > 1e-3


def plain_script() -> str:
    """The plain onnxruntime script shipped in docs/EXPORT.md, as a user copies it."""
    page = (Path(__file__).parents[1] / "docs" / "EXPORT.md").read_text()
    return page.split("<!-- plain-onnx-script -->\n```python\n", 1)[1].split("```", 1)[0]


def test_the_plain_script_in_the_docs_answers_as_predict(synthetic_data, tmp_path, capsys):
    import subprocess
    import sys

    from fmnist.images import export_png

    model_path = trusted_model(tmp_path / "m.pt")
    export.export(export.load_source(model_path), tmp_path / "m.onnx", synthetic_dataset())
    sidecar_path(tmp_path / "m.onnx").unlink()
    assert "fmnist" not in plain_script().replace('"fmnist', "")  # no fmnist import
    (tmp_path / "classify.py").write_text(plain_script())
    paths = []
    for i, image in enumerate(dark_bordered(synthetic_dataset().test_images[:40])):  # taken as they are
        paths.append(tmp_path / f"{i}.png")
        export_png(image, paths[-1])
    plain = subprocess.run(
        [sys.executable, tmp_path / "classify.py", tmp_path / "m.onnx", *paths], capture_output=True, text=True
    )
    assert plain.returncode == 0, plain.stderr
    code, out, _ = run(capsys, "predict", model_path, *paths, "--json", "--top-k", "10")
    assert code == 0
    ours = [json.loads(line) for line in plain.stdout.splitlines()]
    theirs = [json.loads(line) for line in out.splitlines()]
    assert len(ours) == len(theirs) == 40 and len({row["class_name"] for row in theirs}) > 1
    assert len({row["garment"] for row in theirs}) == 2  # both verdicts occur
    for mine, expected in zip(ours, theirs, strict=True):
        assert mine["class_name"] == expected["class_name"] and mine["garment"] == expected["garment"]
        probabilities = dict(zip(data.CLASSES, mine["probabilities"], strict=True))
        assert all(abs(probabilities[name] - p) <= 1e-6 for name, p in expected["top"])


# ---- the model card ---------------------------------------------------------------------------


@pytest.fixture
def card_run(tmp_path, monkeypatch):
    """A run directory as fmnist train leaves it (config, summary, best.pt with a temperature and detector),
    and the card's sample sizes made small."""
    from support import trusted_checkpoint

    from fmnist import card

    monkeypatch.setattr(card, "PHOTOS", 16)
    monkeypatch.setattr(card, "OUTLIERS_PER_KIND", 2)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    trusted_checkpoint(run / "checkpoints" / "best.pt")
    cfg = checkpoint.load(run / "checkpoints" / "best.pt")["config"]
    (run / "config.toml").write_text(config_lib.dumps(config_lib.from_dict(cfg)))
    summary = {
        "config": cfg,
        "parameters": 25450,
        "chosen_epoch": 1,
        "epochs": 1,
        "chosen_by": "best validation accuracy",
        "wall_seconds": 1.0,
        "device": "cpu",
        "torch_version": torch.__version__,
        "seed": 0,
        "code_version": "abc1234-dirty",
        "hardware": {"cpu": "test CPU", "cpu_count": 2},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.mark.slow
def test_the_card_is_measured_from_the_run_and_written_the_same_twice(card_run, tmp_path):
    from fmnist import card

    dataset = synthetic_dataset()
    first = card.write_card(card_run, tmp_path / "card", dataset)
    card.write_card(card_run, tmp_path / "again", dataset)
    names = ("README.md", "config.json", "model.safetensors", "model.onnx", "model.json", "reliability.png")
    for name in names:
        assert (tmp_path / "card" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    readme = (tmp_path / "card" / "README.md").read_text()
    model = TorchPredictor(card_run / "checkpoints" / "best.pt")
    test = evaluate(model.model, dataset.test_images, dataset.test_labels)
    assert first.accuracy == test.accuracy and f"value: {test.accuracy:.4f}" in readme
    assert f"| accuracy | {test.accuracy:.2%} |" in readme and "pipeline_tag: image-classification" in readme
    for row in test.per_class():
        assert f"| {row['class']} | {row['recall']:.2%} |" in readme
    after = calibration_after(model, dataset)
    assert f"{after:.4f}" in readme and "abc1234-dirty" in readme
    config = json.loads((tmp_path / "card" / "config.json").read_text())
    assert config["label_names"] == list(data.CLASSES) and config["model_args"]["hidden"] == [32]


def calibration_after(model, dataset) -> float:
    from fmnist import trust

    logits = model.logits(dataset.test_images)
    return trust.report(model.trust, logits, dataset.test_labels, dataset.test_images).as_dict()["after"]["ece"]


@pytest.mark.slow
def test_a_card_directory_loads_like_its_run(card_run, tmp_path, synthetic_data, capsys):
    import fmnist
    from fmnist import card

    card.write_card(card_run, tmp_path / "card", synthetic_dataset())
    images = synthetic_dataset().test_images[:20]
    run_model, card_model = load_predictor(card_run), load_predictor(tmp_path / "card")
    assert torch.equal(probabilities(card_model, images), probabilities(run_model, images))
    assert card_model.trust.to_dict() == run_model.trust.to_dict()
    assert fmnist.load(tmp_path / "card").predictor.describe()["model"] == "mlp"
    code, out, _ = run(capsys, "eval", tmp_path / "card")
    code_run, out_run, _ = run(capsys, "eval", card_run)
    assert code == code_run == 0 and out == out_run


def test_predict_with_an_export_needs_no_torch(exports, tmp_path, capsys):
    """An exported model answers with onnxruntime and numpy: `fmnist predict m.onnx` imports no torch, and
    answers as the same export does in this process (where torch is loaded)."""
    from fmnist.images import export_png

    _, onnx_path, _, _ = exports["mlp"]
    picture = tmp_path / "item.png"
    export_png(synthetic_dataset().test_images[3], picture)
    loaded, out = heavy_modules_of("predict", str(onnx_path), str(picture), "--json")
    assert loaded == []
    assert main(["predict", str(onnx_path), str(picture), "--json"]) == 0
    assert json.loads(out) == json.loads(capsys.readouterr().out)
