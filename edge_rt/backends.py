"""The edge's backends are the shared YAMNet runtime's (`edgert.yamnet.backends`), named here as the design's
contract names them: `load(name)`, `names()`, `choose()`, `Backend`."""
from edgert.yamnet.backends import Backend, Hardware, choose, load, names, validate_patches

__all__ = ["Backend", "load", "names", "choose", "Hardware", "validate_patches"]
