"""The control plane: process supervision and the admin API. Never imported by the data plane."""
