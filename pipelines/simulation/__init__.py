"""The traffic simulator with known ground truth, its scenarios and `routing demo`."""
