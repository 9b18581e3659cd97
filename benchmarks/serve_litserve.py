"""The same model served by LitServe, with its documented batching, for benchmarks/serve_peers.py.

A `LitAPI` whose `decode_request` reads the multipart field `file` as fmnist serve does (fmnist.images),
`batch` stacks the decoded images, `predict` calls the model once per batch, `unbatch` splits the
answer and `encode_response` returns the same fields as the per-request baseline. LitServe runs the
model in its own worker process and batches up to `--max-batch-size` requests, waiting at most
`--batch-timeout` seconds (LitServe's docs: "Batching").

    python benchmarks/serve_litserve.py CHECKPOINT [--port 0]   # prints the URL it listens on
"""

from __future__ import annotations

import argparse
import socket

import litserve as ls
import torch

from fmnist.data import CLASSES
from fmnist.images import load_image
from fmnist.inference import load_predictor


class FashionAPI(ls.LitAPI):
    def __init__(self, model: str, max_batch_size: int, batch_timeout: float):
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict")
        self.model = model

    def setup(self, device: str) -> None:
        torch.set_num_threads(1)
        self.predictor = load_predictor(self.model, "cpu")

    def decode_request(self, request) -> torch.Tensor:
        upload = request["file"]
        return load_image(upload.file.read(), upload.filename or "upload")

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.predictor.probabilities(images)

    def unbatch(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output)

    def encode_response(self, probs: torch.Tensor) -> dict:
        top_p, top_i = probs.topk(5)
        best = int(top_i[0])
        top = [[CLASSES[i], p] for i, p in zip(top_i.tolist(), top_p.tolist(), strict=True)]
        return {
            "predictions": [{"class_index": best, "class_name": CLASSES[best], "probability": top[0][1], "top": top}]
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout", type=float, default=0.002, help="seconds (default: 0.002, as fmnist's)")
    args = parser.parse_args()
    port = args.port or free_port()
    api = FashionAPI(args.model, args.max_batch_size, args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu")
    print(f"litserve on http://127.0.0.1:{port}/", flush=True)
    server.run(host="127.0.0.1", port=port, log_level="warning", generate_client_file=False)
