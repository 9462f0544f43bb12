"""Model-agnostic operations on trained models and their results, used by the callbacks, the
evaluation tasks and the command-line entry points alike (nothing here imports a CLI):

- `latent_space`: latent paths (lerp, slerp), interpolation grids, attribute vectors, codes of
  a dataset;
- `samples`: sample sets of any model that can sample, written as a grid and PNG files;
- `comparison`: one table of many runs (the `genlab.compare` CLI);
- `tables`: Markdown and CSV tables;
- `plots`: 2-D projections of codes, scatter plots, training curves, histograms (matplotlib).
"""
