"""The RL maths tests share the machine with other suites: one torch thread is plenty."""
import torch

torch.set_num_threads(1)
