"""The `claude-jobs` command."""
