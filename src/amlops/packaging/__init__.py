"""Packaging: the Azure DevOps extension (.vsix) built from vss-extension.json and tasks/ without tfx-cli.

`stage` builds the amlops wheel and lays out a task folder; `package` is `amlops package` (validate, build the
wheel reproducibly, stage, write `manifest`-driven `vsix` parts, zip with `archive`); `validate` and
`schema_check` hold the checks; `parts` the package's files and their part names.
"""
