"""The edge's front end is the shared YAMNet runtime's (`edgert.yamnet.frontend`), named here as the design's
contract names it: `log_mel`, `patches`, `StreamingFrontend`, `IMPLEMENTATION`."""
from edgert.yamnet.frontend import (
                                    IMPLEMENTATION,
                                    StreamingFrontend,
                                    hann_window,
                                    log_mel,
                                    mel_matrix,
                                    padded_length,
                                    patches,
)

__all__ = ["log_mel", "patches", "StreamingFrontend", "IMPLEMENTATION", "mel_matrix", "hann_window", "padded_length"]
