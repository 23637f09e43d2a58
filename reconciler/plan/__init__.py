"""Planning: Changes (from `reconciler.diff`) -> a frozen Plan of ordered host actions.

Pure. The value types shared by the diff, the planner, the renderers and (later)
execute live in `reconciler.plan.changes`.
"""
