"""The per-request server a user would write first, for benchmarks/load.py to measure `fmnist serve` against.

A FastAPI endpoint that reads the upload, converts it and calls the model once per request; a plain
`def`, as FastAPI's docs advise for blocking work, so it runs in Starlette's thread pool. Same
conversion, model, response fields and uvicorn as `fmnist serve`; no batching, no queue bound.

    python benchmarks/serve_baseline.py CHECKPOINT [--port 0]   # prints the URL it listens on
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI, UploadFile

from fmnist.data import CLASSES
from fmnist.images import load_image
from fmnist.inference import load_predictor, probabilities
from fmnist.serve import server


def create_app(model: str) -> FastAPI:
    predictor = load_predictor(model, "cpu")
    app = FastAPI()

    @app.post("/predict")
    def predict(file: UploadFile) -> dict:
        image = load_image(file.file.read(), file.filename or "upload")
        probs = probabilities(predictor, image[None])[0]
        top_p, top_i = probs.topk(5)
        best = int(top_i[0])
        top = [[CLASSES[i], p] for i, p in zip(top_i.tolist(), top_p.tolist(), strict=True)]
        return {
            "predictions": [
                {"class_index": best, "class_name": CLASSES[best], "probability": float(top_p[0]), "top": top}
            ]
        }

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = server.listen("127.0.0.1", args.port)
    print(f"baseline on http://127.0.0.1:{sock.getsockname()[1]}/", flush=True)
    server.run(create_app(args.model), sock, access_log=False)
