"""Datasets: preparation (shapes, Cityscapes, COCO), the COCO-format training Dataset, transforms."""
