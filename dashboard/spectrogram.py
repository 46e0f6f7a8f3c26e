"""An event clip's log-mel spectrogram as a PNG, computed with the product's own front end (the exact features
YAMNet saw: 64 mel bands, 10 ms hop), with the pre-roll marked."""
from __future__ import annotations

import io

from edgert.audio import decode
from edgert.yamnet import frontend
from edgert.yamnet.params import PARAMS

DPI = 100


def render(clip: bytes, *, preroll_s: float = 0.0, title: str = "", width_px: int = 900,
           height_px: int = 260) -> bytes:
    """Encoded clip bytes -> PNG bytes. Raises edgert's ClipDecodeError / EmptyClipError for unreadable audio."""
    from matplotlib.figure import Figure  # no pyplot: its global state is not thread-safe

    wave = decode(clip, "the event's clip")              # float32[n], 16 kHz mono
    mel = frontend.log_mel(wave, pad=False)              # float32[frames, 64], the clip only (no hub padding)
    hop_s = PARAMS.stft_hop_seconds
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    ax = fig.add_subplot()
    im = ax.imshow(mel.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                   extent=(0.0, mel.shape[0] * hop_s, 0, mel.shape[1]))
    if preroll_s > 0:
        ax.axvline(preroll_s, color="#00e5ff", lw=1.2, ls="--")
        ax.text(preroll_s, mel.shape[1] - 1, " event", color="#00e5ff", va="top", fontsize=8)
    ax.set_xlabel("seconds (dashed: end of the pre-roll)")
    ax.set_ylabel(f"mel band ({PARAMS.mel_min_hz:.0f}–{PARAMS.mel_max_hz:.0f} Hz)")
    if title:
        ax.set_title(f"log-mel · {title}", fontsize=9)
    fig.colorbar(im, ax=ax, label="log(mel + 0.001)", pad=0.01)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
