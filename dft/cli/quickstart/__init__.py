"""The CPU quickstart: the paper's Table 1 (and Table 3) at toy scale, through the same commands a cluster runs."""
