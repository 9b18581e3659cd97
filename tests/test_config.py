import pytest

from fmnist import config
from fmnist.config import Config
from fmnist.errors import FmnistError
from fmnist.run_dir import RunDir


def test_defaults_are_the_reference_configuration():
    cfg = Config()
    assert (cfg.model, cfg.hidden, cfg.activation) == ("mlp", (512, 512), "relu")
    assert (cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.lr) == (15, 64, "adam", 1e-3)
    assert cfg.val_size == 5000  # held out for model choice, calibration and the detector


def test_toml_then_flags_override_in_order(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('epochs = 3\nlr = 0.01\nhidden = [128, 64]\naugment = ["flip"]\n')
    cfg = config.resolve(path, {"lr": "0.5", "batch_norm": True})
    assert (cfg.epochs, cfg.lr, cfg.hidden, cfg.augment, cfg.batch_norm) == (3, 0.5, (128, 64), ("flip",), True)


def test_round_trip_through_toml(tmp_path):
    cfg = Config(hidden=(32,), optimizer="sgd", momentum=0.9, nesterov=True, augment=("flip", "crop"), val_size=100)
    path = tmp_path / "c.toml"
    path.write_text(config.dumps(cfg))
    assert config.resolve(path) == cfg


def test_flag_strings_are_coerced():
    assert config.coerce("hidden", "256, 128") == (256, 128)
    assert config.coerce("augment", "none") == ()
    assert config.coerce("nesterov", "true") is True
    assert config.coerce("lr", "3e-4") == 3e-4


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": 0}, "epochs must be > 0"),
        ({"batch_size": -1}, "batch_size must be > 0"),
        ({"lr": 0}, "lr must be > 0"),
        ({"lr": "fast"}, "lr: expected a number"),
        ({"epochs": 2.5}, "epochs: expected an integer"),
        ({"epochs": True}, "epochs: expected an integer"),
        ({"model": "resnet"}, "model: unknown value 'resnet'"),
        ({"optimizer": "lion"}, "optimizer: unknown value 'lion'"),
        ({"schedule": "linear"}, "schedule: unknown value 'linear'"),
        ({"augment": "flip,rotate"}, "augment: unknown value 'rotate'"),
        ({"accumulate": 0}, "accumulate must be > 0"),
        ({"accumulate": 2, "on_nan": "skip"}, "on_nan = skip needs accumulate = 1"),
        ({"mixup_alpha": -0.2}, "mixup_alpha must be >= 0"),
        ({"ema_decay": 1.0, "val_size": 100}, "ema_decay must be in [0, 1)"),
        ({"patience": -1}, "patience must be >= 0"),
        ({"max_time": float("inf")}, "max_time must be a finite number"),
        ({"threads": "0"}, "threads must be auto or a positive integer"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"hidden": "0,10"}, "hidden must list one or more positive widths"),
        ({"nesterov": True}, "nesterov needs --optimizer sgd"),
        ({"batch_norm": True, "batch_size": 1}, "batch norm needs at least 2 images per batch"),
        ({"warmup_epochs": 20}, "warmup_epochs (20.0) must be less than epochs"),
        ({"colour": "red"}, "unknown option 'colour'"),
    ],
)
def test_bad_values_are_one_line_errors(values, message):
    with pytest.raises(FmnistError) as e:
        config.from_dict(values)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    with pytest.raises(FmnistError, match="bad.toml: invalid TOML"):
        config.resolve(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("epoch = 3")
    with pytest.raises(FmnistError, match="unknown.toml: unknown option 'epoch'"):
        config.resolve(unknown)
    with pytest.raises(FmnistError, match="missing.toml: config file not found"):
        config.resolve(tmp_path / "missing.toml")


def test_a_resumed_run_may_change_where_it_runs_and_its_data_lies_but_nothing_else(tmp_path):
    saved = Config(hidden=(32,), epochs=3, device="cuda", data_dir="/training/machine/data")
    (tmp_path / "config.toml").write_text(config.dumps(saved))
    saved = RunDir(tmp_path).read_config()
    resumed = config.for_resume(saved, {"device": "cpu", "data_dir": "/here", "epochs": "3"}, tmp_path)
    assert resumed == saved.replace(device="cpu", data_dir="/here")
    with pytest.raises(FmnistError, match="epochs=4 conflicts with the run's epochs=3"):
        config.for_resume(saved, {"epochs": "4"}, tmp_path)
    with pytest.raises(FmnistError, match="not a run directory"):
        RunDir(tmp_path / "missing").read_config()
