"""Authentication and permissions under `--auth-config` (Xinference's file format):
API keys and login tokens, per-route permissions, per-key quotas and usage."""
