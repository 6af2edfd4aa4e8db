"""Scores: pixel and instance scores (IoU, SEG, matching), the ISBI 2012 metrics, and
scoring folders of predictions (``tileunet evaluate``).
"""
