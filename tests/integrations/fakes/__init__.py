"""Local HTTP servers that play the remote APIs of integrations.md and enforce their contracts."""
