"""Training, evaluation and export of radview's four models (plain PyTorch on CPU).

Not imported by the viewer. Entry point: ``python -m training {cache,split,train,evaluate,export}
<model>``. Every model is retrained from scratch with a fixed seed; images never enter the repo:
they are read from ``../shared/data`` and cached as uint8 arrays under ``training/cache/``.
"""

MODEL_IDS = ("body_region", "pneumonia", "covid", "lungs")
