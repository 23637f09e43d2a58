"""The embedded simulated Xen host: what libxl, hotplug scripts and backends would do.

`layout` describes, as plain data, the xenstore writes a real toolstack performs;
the simulator plays them against its own xenstored.
"""
