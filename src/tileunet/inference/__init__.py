"""From a trained network to label images: overlap-tile geometry and prediction,
post-processing into instances, the working scale, block-wise prediction of images
larger than memory, and the files ``tileunet predict`` writes.
"""
