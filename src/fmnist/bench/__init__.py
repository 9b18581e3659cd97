"""Speed measurements: the steady-state bench, its report, timing and FLOP helpers, the textbook
pipeline it is compared with, and the training profiler."""
