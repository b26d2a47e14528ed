"""The encoder interface the predictor runs on, and its PyTorch implementation.

A backend encodes preprocessed crops and tokenised texts for one tower and returns
L2-normalised embeddings. Compiled runtimes (ONNX Runtime, AOTInductor, TensorRT) implement
the same interface, so the predictor never knows which one it runs on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from sgclip_ros.core.model import SGClipModel, tokenize
from sgclip_ros.core.model_config import PreprocessConfig, SGClipConfig


class EncoderBackend(ABC):
    """Per-tower image and text encoders plus each tower's logit scale."""

    name: str = "abstract"

    def __init__(self, config: SGClipConfig, model_id: str):
        self.config = config
        # Identifies the weights: text embeddings are cached under it.
        self.model_id = model_id

    @property
    def towers(self) -> int:
        return self.config.towers

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.config.preprocess

    @property
    def device(self) -> str:
        return "cpu"

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return tokenize(self.config, texts)

    @abstractmethod
    def encode_images(self, tower: int, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] float pixels -> [B, D] normalised embeddings (on CPU)."""

    @abstractmethod
    def encode_texts(self, tower: int, tokens: torch.Tensor) -> torch.Tensor:
        """[T, L] token ids -> [T, D] normalised embeddings (on CPU)."""

    @abstractmethod
    def logit_scale(self, tower: int) -> float:
        """exp(logit_scale) of the tower."""


class TorchBackend(EncoderBackend):
    """Eager PyTorch on CPU or CUDA."""

    name = "torch"

    def __init__(self, model: SGClipModel, model_id: str, device: str = "cpu"):
        super().__init__(model.config, model_id)
        self._device = torch.device(device)
        self.model = model.to(self._device).eval()
        self._scales = [float(t.logit_scale.detach().exp()) for t in self.model.towers]

    @property
    def device(self) -> str:
        return str(self._device)

    @torch.inference_mode()
    def encode_images(self, tower: int, pixels: torch.Tensor) -> torch.Tensor:
        emb = self.model.towers[tower].encode_image(pixels.to(self._device), normalize=True)
        return emb.float().cpu()

    @torch.inference_mode()
    def encode_texts(self, tower: int, tokens: torch.Tensor) -> torch.Tensor:
        emb = self.model.towers[tower].encode_text(tokens.to(self._device), normalize=True)
        return emb.float().cpu()

    def logit_scale(self, tower: int) -> float:
        return self._scales[tower]
