"""Fixtures for the Azure ML contract tests; they live in azure_support.py (importable by the tests too)."""
from azure_support import (azure_ws, azurite, credential, fake, storage, test_cloud, training_data,  # noqa: F401
                           training_project)
