"""Reading and writing: images and masks, lazy readers for images larger than memory,
exact percentiles of such images, and safe writing (temporary name, then rename).
"""
