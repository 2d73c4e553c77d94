"""The data pipeline's option names, without torch: what the config validates (``resize``, ``eval_images``).

``data.transforms`` and ``data.dataset`` import them from here, so that building a ``Config`` (and the CLI's help)
never loads torch, albumentations or OpenCV.
"""

#: Where the padding goes per resize mode: top-left of the canvas (fit) or centred (square, as matterport).
PAD_POSITION = {"fit": "top_left", "square": "center"}
RESIZE_MODES = tuple(PAD_POSITION)
#: Which val images an evaluation scores (config ``eval_images``): all, or only those with annotations
#: (``annotated_only``; matterport's COCO evaluation, samples/coco/coco.py load_coco).
EVAL_IMAGES = ("all", "annotated")
