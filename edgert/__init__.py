"""The contract between the edge (`edge_rt`) and the cloud (`cloud_svc`): what both sides must agree on.

- `edgert.v1`: the gRPC messages and services, generated from `protos/edgert/v1` by `python -m edgert.protos_build`
  (run by `make setup`; never committed);
- `edgert.labels`: the label taxonomy (AudioSet class groups, shipped operating points) and label scoring;
- `edgert.yamnet`: the YAMNet runtime both sides run: the exact log-mel front end (Cython, CUDA and numpy twins),
  the backends (TensorRT, ONNX Runtime, TFLite), the distress head, the class map, the model files and their
  manifest, and whole-clip analysis; the edge streams through it, the cloud's verifier re-scores clips with it;
- `edgert.audio`: clip decoding and resampling to YAMNet's 16 kHz (soxr);
- `edgert.settings`: the strict config base and its layered loader (defaults <- YAML <- env <- overrides);
- `edgert.channel`: the gRPC channel builder (TLS and mTLS from PEM files, message limits, keepalives).

`edge_rt` and `cloud_svc` import this package and never each other (an import-linter contract, run by
`make test`). It imports neither of them.
"""
