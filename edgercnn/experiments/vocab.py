"""What ``edgercnn reproduce`` offers, without torch: its comparisons (``--compare``) and measured datasets
(``--dataset``). ``experiments.reproduce`` imports them from here (and asserts its protocols match), so the CLI's
help never loads torch.
"""

from edgercnn.model.vocab import MASK_TERMS

#: The two configurations compared: the plain Mask R-CNN and the paper's best (Sobel, L2, alpha 1).
CONFIGS = {"baseline": {"filters": []}, "sobel-p2": {"filters": ["sobel"], "p": 2.0}}
#: The configurations of each comparison (``--compare``): the paper's pair, and the edge loss among the other
#: boundary-aware mask losses, each added to the BCE at its paper's weight and schedule (model.mask_terms).
COMPARISONS = {
    "edge": CONFIGS,
    "boundary-losses": {**CONFIGS, **{name: {"filters": [], "mask_losses": [name]}
                                      for name in MASK_TERMS}},
}
#: The datasets with a measured CPU recipe and a committed reference (``reproduce.PROTOCOLS``).
DATASETS = ("shapes", "pennfudan")
