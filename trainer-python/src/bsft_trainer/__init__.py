"""bsft_trainer: the bundled BehaviorSFT trainer. `python -m bsft_trainer train|predict|merge --config train.json`."""

__version__ = "0.1.0"
