"""Training: config, losses, EMA, statistics, the loop, distributed set-up, divergence guard."""
