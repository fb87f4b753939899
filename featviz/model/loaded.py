"""The loaded model every stage uses to feed images to a network: normalization, batching,
predictions and accuracy live here and nowhere else."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class LoadedModel:
    """A network plus what it needs to be fed: it takes inputs in [0, 1] normalized with mean/std
    (per channel, in the order of `input_shape`'s channels)."""

    net: nn.Module
    classes: list[str]
    input_shape: tuple[int, int, int]
    mean: list[float]
    std: list[float]
    meta: dict = field(default_factory=dict)

    def output_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Dataset labels as the network's output indices (model.json's `label_to_output`: an
        imported network's outputs need not be the dataset's classes; identity otherwise)."""
        mapping = self.meta.get("label_to_output")
        if not mapping:
            return labels
        return torch.as_tensor(mapping, dtype=torch.int64)[labels]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def to_input(self, images: torch.Tensor, device) -> torch.Tensor:
        """Images (N, C, H, W), uint8 in [0, 255] or float in [0, 1] -> the normalized float input
        the network takes, on `device`."""
        if images.dtype == torch.uint8:
            x = images.to(device, non_blocking=True).float().div_(255.0)
        else:
            x = images.to(device, non_blocking=True).float()
        return self.normalize(x)

    def to(self, device) -> "LoadedModel":
        self.net.to(device)
        return self

    def use_channels_last(self, device) -> str | None:
        """Convert the network to channels_last (NHWC) and return None where its forward pass runs
        on NHWC inputs; else leave it contiguous and return why not (a user's forward that calls
        `.view` on a conv output, `x.view(x.size(0), -1)`, fails on them)."""
        x = torch.zeros((1, *self.input_shape), device=device).contiguous(memory_format=torch.channels_last)
        self.net.to(memory_format=torch.channels_last)
        try:
            with torch.no_grad():
                self.net(self.normalize(x))
            return None
        except RuntimeError as exc:
            self.net.to(memory_format=torch.contiguous_format)
            return " ".join(str(exc).split())[:120]

    def batch_for(self, batch_size: int | None) -> int:
        """Images per inference batch: the caller's, else 1000 up to ~45x45 px inputs and fewer above
        (2 million input pixels a batch: 39 at 224 px, where 1000 images through a resnet50 held 11 GB)."""
        if batch_size is not None:
            return int(batch_size)
        h, w = self.input_shape[-2:]
        return max(1, min(1000, 2_000_000 // max(1, int(h) * int(w))))

    @torch.no_grad()
    def logits(self, images_u8: torch.Tensor, device, batch_size: int | None = None) -> torch.Tensor:
        """Class logits (N, classes) of images (uint8, or float in [0, 1]), in batches, on the CPU."""
        self.net.eval()
        batch_size = self.batch_for(batch_size)
        out = [self.net(self.to_input(images_u8[i:i + batch_size], device)).float().cpu()
               for i in range(0, len(images_u8), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, len(self.classes))

    def predict(self, images_u8: torch.Tensor, device, batch_size: int | None = None) -> torch.Tensor:
        """Softmax probabilities (N, classes) of images (uint8, or float in [0, 1]), on the CPU."""
        return torch.softmax(self.logits(images_u8, device, batch_size), 1)

    @torch.no_grad()
    def accuracy(self, images_u8: torch.Tensor, labels: torch.Tensor, device, batch_size: int | None = None,
                 dtype: torch.dtype | None = None, memory_format=torch.contiguous_format) -> float:
        """Top-1 accuracy on uint8 images; optionally under autocast and in a memory format."""
        self.net.eval()
        batch_size = self.batch_for(batch_size)
        correct = 0
        for i in range(0, len(labels), batch_size):
            x = self.to_input(images_u8[i:i + batch_size], device).contiguous(memory_format=memory_format)
            with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = self.net(x)
            correct += int((out.argmax(1).cpu() == labels[i:i + batch_size]).sum())
        return correct / max(1, len(labels))


def input_description(channels: int, mean, std, normalization: str, gray_to_rgb: bool) -> dict:
    """What the network takes, for model.json and the run page."""
    return {"channel_order": "RGB" if channels == 3 else "gray", "value_range": [0.0, 1.0],
            "mean": list(mean), "std": list(std), "normalization": normalization,
            "formula": "(x - mean) / std per channel, x in [0, 1]", "gray_to_rgb": bool(gray_to_rgb)}
