"""The agent behind `reconciler watch`: one level-triggered pass per trigger, and its status."""
