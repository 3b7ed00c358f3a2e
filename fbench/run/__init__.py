"""A Suite -> finished cells: cell expansion and keys, a cell's inputs, training and predicting one cell,
executors (local, local-jobs, SLURM), jobs, and the cell folders on disk."""
