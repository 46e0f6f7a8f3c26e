"""The YAMNet runtime that the edge and the cloud's verifier both run, so a clip scores the same on either side.

- `frontend`: `log_mel`, `patches`, `StreamingFrontend`, exact to the TF-Hub model (Cython, CUDA, numpy twins);
- `backends`: `load(name)` -> `.infer(patches) -> (scores[N,521], embeddings[N,1024])`;
- `head`: the trained distress head on the embedding, YAMNet's own scores and loudness above the room;
- `classmap`, `paths`, `manifest`: the AudioSet class names and the model files with their sha256 checks;
- `analysis`: window loudness, the running background level, and whole-clip analysis.

Building the model files (TF export, head training) is the edge's job (`python -m edge_rt.models build`).
"""
