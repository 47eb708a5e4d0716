"""Patient digital twins: synthetic ground truth, features, the GNN + neural-ODE model, training."""
