"""A minimal Language Server Protocol client for the real yaml-language-server.

Speaks JSON-RPC over the server's stdio (`Content-Length` framed), as VS Code and Neovim
do: `initialize`, `workspace/didChangeConfiguration` with a `yaml.schemas` glob mapping,
`textDocument/didOpen`, then waits for the server's `textDocument/publishDiagnostics`
for that document. No timing: each wait ends when the server answers (or exits).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVER = HERE / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"


class LanguageServer:
    """One yaml-language-server process; `diagnostics(path, text)` validates a document."""

    def __init__(self, schemas: dict[str, list[str]], root: Path) -> None:
        """`schemas` is the editor's `yaml.schemas` setting: schema path or URI (relative to
        `root`, the workspace) -> globs of the files it checks."""
        if not SERVER.exists():
            raise RuntimeError(f"{SERVER} is missing: run 'npm ci --prefix tests/editor' (scripts/test does)")
        self.proc = subprocess.Popen(
            ["node", str(SERVER), "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.next_id = 0
        self.opened: set[str] = set()
        self.request("initialize", {
            "processId": None,
            "rootUri": root.as_uri(),
            "capabilities": {"textDocument": {"publishDiagnostics": {"relatedInformation": False}}},
        })
        self.notify("initialized", {})
        self.settings: dict[str, Any] = {
            "validate": True, "schemas": schemas, "schemaStore": {"enable": False},
        }
        self.notify("workspace/didChangeConfiguration", {"settings": {"yaml": self.settings}})

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = 0
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("yaml-language-server exited")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        message: dict[str, Any] = json.loads(self.proc.stdout.read(length))
        if "id" in message and "method" in message:  # a request from the server
            result: Any = None
            if message["method"] == "workspace/configuration":  # as an editor would: the yaml section
                result = [self.settings if item.get("section") == "yaml" else {} for item in message["params"]["items"]]
            self._send({"id": message["id"], "result": result})
        return message

    def request(self, method: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        self._send({"id": self.next_id, "method": method, "params": params})
        while True:
            message = self._receive()
            if message.get("id") == self.next_id and "method" not in message:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result")

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._send({"method": method, "params": params})

    def diagnostics(self, path: Path, text: str | None = None) -> list[dict[str, Any]]:
        """The diagnostics the server publishes for `path` opened with `text` (default: its
        content). Each path is opened once and stays open (a close would publish an empty
        list that a later open of the same URI could take for its answer)."""
        uri = path.as_uri()
        assert uri not in self.opened, f"{path} was opened already: give each document its own path"
        self.opened.add(uri)
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "yaml", "version": 1, "text": path.read_text() if text is None else text,
        }})
        while True:
            message = self._receive()
            if message.get("method") == "textDocument/publishDiagnostics" and message["params"]["uri"] == uri:
                result: list[dict[str, Any]] = message["params"]["diagnostics"]
                return result

    def hover(self, path: Path, line: int, character: int) -> str:
        """The hover text (markdown) at a 0-based position of an opened document."""
        result = self.request("textDocument/hover", {
            "textDocument": {"uri": path.as_uri()}, "position": {"line": line, "character": character},
        })
        contents = (result or {}).get("contents", "")
        return str(contents.get("value", "") if isinstance(contents, dict) else contents)

    def close(self) -> None:
        try:
            self.request("shutdown", {})
            self.notify("exit", {})
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
