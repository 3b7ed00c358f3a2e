"""Perturbations for evaluation conditions (occlusion, face masks), applied to device batches."""
