"""YAMNet's trained constants, frozen: the numbers the model was trained with are not configuration."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class YamnetParams:
    sample_rate: int = 16000
    stft_window_seconds: float = 0.025
    stft_hop_seconds: float = 0.010
    mel_bands: int = 64
    mel_min_hz: float = 125.0
    mel_max_hz: float = 7500.0
    log_offset: float = 0.001
    patch_window_seconds: float = 0.96
    patch_hop_seconds: float = 0.48
    num_classes: int = 521
    embedding_size: int = 1024

    @property
    def window_length_samples(self) -> int:  # 400
        return int(round(self.sample_rate * self.stft_window_seconds))

    @property
    def hop_length_samples(self) -> int:  # 160
        return int(round(self.sample_rate * self.stft_hop_seconds))

    @property
    def fft_length(self) -> int:  # 512: next power of two >= window
        return 2 ** (self.window_length_samples - 1).bit_length()

    @property
    def num_spectrum_bins(self) -> int:  # 257
        return self.fft_length // 2 + 1

    @property
    def patch_frames(self) -> int:  # 96
        return int(round(self.patch_window_seconds / self.stft_hop_seconds))

    @property
    def patch_hop_frames(self) -> int:  # 48
        return int(round(self.patch_hop_seconds / self.stft_hop_seconds))

    @property
    def patch_bands(self) -> int:  # 64
        return self.mel_bands

    @property
    def patch_shape(self) -> tuple[int, int]:
        return (self.patch_frames, self.patch_bands)


PARAMS = YamnetParams()
