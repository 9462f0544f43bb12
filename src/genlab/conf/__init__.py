"""genlab's Hydra config tree. A package so that installed console scripts (`genlab-train`, ...)
find it: Hydra looks up the primary config of an installed module as `genlab.conf`."""
