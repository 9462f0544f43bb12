"""Hyperparameter search with Optuna: `python -m genlab.train -m hparams_search=vae_optuna`.

genlab's Hydra sweeper (hydra_plugins/genlab_optuna_sweeper) asks Optuna for trials and
launches each as an ordinary training job; the job reports its metric to the trial after every
validation (`pruning.OptunaPruning`), is pruned when the study's pruner says so, and tells the
study how it ended (`study.finish_job_trial`). Samplers, pruners and storages are Optuna's.
"""
