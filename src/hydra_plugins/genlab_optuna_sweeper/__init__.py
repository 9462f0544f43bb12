"""genlab's Optuna sweeper for Hydra (`hydra/sweeper: optuna`, see genlab/conf/hydra/sweeper)."""
