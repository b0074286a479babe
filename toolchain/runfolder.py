"""The run folder and its manifest: how stages find each other's artifacts.

`<out>/manifest.json` holds, per stage: the artifacts it wrote (paths relative to the run folder,
with sha256), a fingerprint of its inputs (so `fbtool run` can skip a stage whose inputs did not
change), the figures it measured, and when it ran. Stages never reach into each other; they ask
the manifest for an artifact by (stage, key).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import FbtoolError
from .fsutil import sha256_file, write_json

MANIFEST = "manifest.json"
SCHEMA = 1


def fingerprint(*parts: Any) -> str:
    """Stable hash of JSON-able parts and files (a Path part contributes its sha256)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            h.update(sha256_file(p).encode() if p.is_file() else f"missing:{p}".encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class RunFolder:
    def __init__(self, out: str | os.PathLike):
        self.root = Path(out)
        self.path = self.root / MANIFEST
        self.data: dict[str, Any] = {"schema": SCHEMA, "stages": {}}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                raise FbtoolError(f"{self.path} is not valid JSON", "delete the run folder and start again") from None

    def file(self, name: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / name

    def record(self, stage: str, artifacts: dict[str, str | os.PathLike], info: dict | None = None,
               inputs: str | None = None, recipe=None) -> None:
        entry: dict[str, Any] = {
            "artifacts": {},
            "info": info or {},
            "inputs": inputs,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        for key, p in artifacts.items():
            p = Path(p)
            rel = os.path.relpath(p, self.root) if p.is_absolute() or p.exists() else str(p)
            entry["artifacts"][key] = {"path": rel, "sha256": sha256_file(p) if p.is_file() else None}
        self.data["stages"][stage] = entry
        if recipe is not None:
            self.data["recipe"] = {"name": recipe.name, "hash": recipe.hash, "source": recipe.source}
        write_json(self.path, self.data)

    def stage(self, stage: str) -> dict | None:
        return self.data["stages"].get(stage)

    def artifact(self, stage: str, key: str, required: bool = True) -> Path | None:
        entry = self.stage(stage)
        if entry is None or key not in entry["artifacts"]:
            if not required:
                return None
            raise FbtoolError(f"the run folder {self.root} has no '{key}' from stage '{stage}'",
                              f"run `fbtool {stage} -o {self.root}` first")
        p = self.root / entry["artifacts"][key]["path"]
        if not p.exists():
            if not required:
                return None
            raise FbtoolError(f"{p} is listed in the manifest but missing", f"run `fbtool {stage}` again")
        return p

    def is_fresh(self, stage: str, inputs: str) -> bool:
        """True when the stage ran with these inputs and its artifacts are intact."""
        entry = self.stage(stage)
        if not entry or entry.get("inputs") != inputs:
            return False
        for a in entry["artifacts"].values():
            p = self.root / a["path"]
            if not p.exists() or (a["sha256"] and p.is_file() and sha256_file(p) != a["sha256"]):
                return False
        return True
