"""What the three tasks share: the template task, the CLI, optimisation, checkpointing, resumption, distributed
evaluation, the data-module base, image decoding with skip-and-count, and drawing helpers."""
