"""Training students: synthetic scenes, export datasets, losses, perturbations, the loop, eval.

Modules import torch but nothing heavier at import time; nothing runs on import.
"""
