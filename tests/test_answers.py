"""One answer to "what is this picture?": predict, eval --images, the server and the Python API build it alike."""

import json

import pytest
from fastapi.testclient import TestClient
from support import labelled_folder, mosaic, trusted_checkpoint

import fmnist
from fmnist.cli import main
from fmnist.inference import load_predictor
from fmnist.serve.app import create_app
from fmnist.serve.limits import Limits

RAW = {"Content-Type": "application/octet-stream"}


def mixed_folder(root):
    """Garment photos rendered from validation images in their class folders, and three non-garments
    (mosaics) filed as bags and trousers: what a user's folder of downloads looks like."""
    labelled = labelled_folder(root)
    for n, (folder, label) in enumerate((("bag", 8), ("bag", 8), ("Trousers", 1))):
        path = root / folder / f"clutter-{n}.jpg"
        path.write_bytes(mosaic(seed=n))
        labelled.append((path, label))
    return labelled


def test_predict_eval_images_and_the_server_give_the_same_answers(synthetic_data, tmp_path, capsys):
    model = trusted_checkpoint(tmp_path / "m.pt")
    labelled = mixed_folder(tmp_path / "photos")
    files = [path for path, _ in labelled]

    assert main(["predict", str(model), *map(str, files), "--json", "--top-k", "5"]) == 0
    predicted = {row.pop("path"): row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert len(predicted) == len(files)
    verdicts = [row["garment"] for row in predicted.values()]
    assert True in verdicts and False in verdicts  # the mix holds both kinds, so equal verdicts mean something

    with TestClient(create_app(load_predictor(model), Limits(top_k=5))) as http:
        for path in files:
            [served] = http.post("/predict", content=path.read_bytes(), headers=RAW).json()["predictions"]
            row = dict(predicted[str(path)])
            assert served.pop("probability") == pytest.approx(row.pop("probability"), abs=1e-6)
            assert served.pop("in_distribution_score") == pytest.approx(row.pop("in_distribution_score"), abs=1e-9)
            served_top, row_top = served.pop("top"), row.pop("top")
            assert [name for name, _ in served_top] == [name for name, _ in row_top]
            assert [p for _, p in served_top] == pytest.approx([p for _, p in row_top], abs=1e-6)
            assert served == row, path

    in_python = fmnist.load(model).predict(files, top_k=5)
    assert [a.as_dict() for a in in_python] == list(predicted.values())

    assert main(["eval", str(model), "--images", str(tmp_path / "photos"), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["calibration_and_ood"]
    assert fmnist.load(model).evaluate(tmp_path / "photos").calibration.as_dict() == figures
    scores = [row["in_distribution_score"] for row in predicted.values()]
    accepted = [
        predicted[str(path)]["class_index"] == label for path, label in labelled if predicted[str(path)]["garment"]
    ]
    assert figures["accepted"] == pytest.approx(len(accepted) / len(files))
    assert figures["accepted_accuracy"] == pytest.approx(sum(accepted) / len(accepted))
    everything = next(row for row in figures["risk_coverage"] if row["coverage"] == 1.0)
    assert everything["min_score"] == pytest.approx(min(scores), abs=1e-9)


@pytest.mark.parametrize(("score", "shown"), [(0.004, "0.004 < 0.015"), (0.01496, "0.01496 < 0.01500")])
def test_a_rejected_answer_prints_a_score_that_is_seen_to_be_below_the_threshold(score, shown):
    import numpy as np

    from fmnist.answer import Answer

    answer = Answer(9, "Ankle boot", 0.99, [("Ankle boot", 0.99)], False, score, 0.015, True, np.zeros((28, 28)))
    assert f"(in-distribution score {shown}); best guess Ankle boot 99.0%" in str(answer)
