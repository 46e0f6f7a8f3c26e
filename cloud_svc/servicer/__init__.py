"""The servicers: the only code that touches protobuf messages on the server side (translation and validation)."""
