"""Packaging: build the amlops wheel and stage the Azure DevOps task folders (later: the .vsix)."""
