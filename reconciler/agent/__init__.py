"""The agent: `reconciler watch` keeps a host converged (issue 12)."""
