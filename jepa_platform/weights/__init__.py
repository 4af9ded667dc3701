"""Encoder weights in and out: every file an encoder comes from, and the files it can leave as.

In (`load.encoder_source`, `jepa_platform.load_encoder`): this platform's runs and checkpoints, official
V-JEPA / V-JEPA 2 / 2.1 `.pt` files (`checkpoints`), Hugging Face V-JEPA 2 folders (`hf`) and this
platform's safetensors exports. Out (`export`): a Hugging Face folder or a safetensors export.
The architecture is read from the file where the file states it (a config, a job spec) and from the
tensors' shapes otherwise (`architecture`).
"""
