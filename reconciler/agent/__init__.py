"""The watch agent: live observation, policy, the loop that keeps a host converged."""
