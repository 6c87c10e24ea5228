"""Fixtures for the ACI target tests; they live in aci_support.py (importable by the tests too)."""
from aci_support import azurite, fake_arm, key_vault, model, stand_in, tls_pair, trained, workspace  # noqa: F401
