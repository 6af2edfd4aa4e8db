"""What the network is trained to output: instance masks, the separation borders
between touching cells, and the paper's loss weight map (eq. 2).
"""
