"""In-context learning you can steer: answers restricted to labels (scored by the model's
log-probabilities), examples drawn from a pool per input, and calibration.

- ``labels``: whole-label log-probabilities;
- ``answers``: the label answer, and the served-model fallback (a grammar);
- ``calibration``: Zhao et al. 2021, "Calibrate Before Use";
- ``selection``: K examples from a pool (random, similar, diverse);
- ``options``: the options as the CLI and the Python API both resolve and apply them.
"""
