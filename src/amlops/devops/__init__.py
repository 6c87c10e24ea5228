"""The Azure Pipelines task protocol: inputs, service connections -> credentials, `##vso` logging commands,
secrets, summaries, and the four task entrypoints (`python -m amlops.devops <TaskName>`)."""
