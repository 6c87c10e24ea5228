"""Azure ML v2 pipeline YAML: loading, validation and the local executor."""
