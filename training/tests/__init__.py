"""Tests of the sample training project (a package, so its conftest never shadows the root tests/ one)."""
