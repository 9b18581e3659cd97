"""Studies made of many training runs: `compare` (a grid of configs x seeds) and `tune` (Optuna)."""
