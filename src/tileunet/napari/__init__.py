"""The napari plugin: the Segment and Train widgets, the annotations they write, and
the training runs a viewer starts (these last two need no napari).
"""
