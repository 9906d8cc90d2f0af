"""Measure a model's accuracy on the MNIST test set (all 10,000 images).

    python tools/evaluate.py --model lenet --data-dir /tmp/mnist_root --json
    python tools/evaluate.py --model mlp --data-dir DIR --weights path/to/mlp.safetensors

With --json, stdout carries exactly one JSON object: {"model": ..., "accuracy": ..., "n": ...}.
Missing data or bad weights print one line on stderr and exit with status 2.
Owns the accuracy computation that tools/train.py reuses for its model card.
"""

from __future__ import annotations

import argparse
import json
import sys

# Run as a script, Python puts tools/ on the path, not the repository root that holds `models`.
import torch  # noqa: E402
from convscope.models.nets import MODELS  # noqa: E402
from convscope.models.weights import WeightsError, load_model  # noqa: E402
from mnist_data import MnistDataError, load_split, to_input  # noqa: E402
from torch import nn  # noqa: E402

EXIT_ERROR = 2


@torch.inference_mode()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of `images` (uint8 (N, 28, 28)) whose argmax logit equals the label."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = model(to_input(images[i : i + batch_size]))
        correct += int((logits.argmax(1) == labels[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(images), 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--data-dir", required=True, help="folder holding MNIST/raw/ (torchvision layout)")
    p.add_argument("--weights", default=None, help="safetensors file (default: the shipped models/<model>)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    try:
        model = load_model(args.model, args.weights)
        images, labels = load_split(args.data_dir, train=False)
    except (WeightsError, MnistDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    acc = accuracy(model, images, labels)
    if args.json:
        print(json.dumps({"model": args.model, "accuracy": acc, "n": len(images)}))
    else:
        print(f"{args.model}: {acc:.4%} of {len(images)} MNIST test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
