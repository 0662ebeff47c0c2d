"""deepflow: predict, simulate and optimize distributed deep-learning training."""
