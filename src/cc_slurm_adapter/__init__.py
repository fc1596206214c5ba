"""cc-slurm-adapter: keeps ClusterCockpit's cc-backend job table true to Slurm."""

__version__ = "0.1.0"

__all__ = ["__version__"]
