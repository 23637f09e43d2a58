"""Planning: Changes (from `reconciler.diff`) -> a frozen Plan of ordered host actions.

Pure. The value types shared by the diff, the planner, the renderers and (later)
execute live in `reconciler.plan.changes`; `build_plan` and `Plan` in
`reconciler.plan.build`; the step table in `steps`, the edge rules in `rules`, the
renderers in `render_text`, `render_json` and `render_graph`.
"""
