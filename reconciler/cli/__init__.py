"""The command line: parses arguments, composes drivers with the pure stages, prints.

This is the only package that may import `drivers`. Each verb is a module with
`register(subparsers)` and `run(args) -> int`; `main` lists them.
"""
