"""Managed online endpoints with a blue/green rollout: on Azure ML (azure-ai-ml) or on this machine (local
inference servers behind a Caddy router). `rollout` is the one implementation both share."""
