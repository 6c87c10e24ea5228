"""Deployment targets: the local Azure ML inference server process, and Azure Container Instances."""
