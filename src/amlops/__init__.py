"""amlops: Azure ML training pipelines from Azure Pipelines, or on one machine with no Azure."""

__version__ = "0.1.0"
