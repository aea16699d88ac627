"""What a supervisor launched, on disk: a restarted supervisor (or xinference-local)
brings every model back from it. One JSON file per REST endpoint, replaced atomically
(written to a temporary file, then renamed), so a crash mid-write leaves the old one."""

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

logger = logging.getLogger(__name__)

FORMAT = 1


class LaunchedStore:
    def __init__(self, path: Optional[Path]):
        self.path = path  # None: nothing is kept (in-process test clusters)

    @classmethod
    def for_endpoint(cls, state_dir: Path, host: str, port: int) -> "LaunchedStore":
        return cls(Path(state_dir) / f"launched-{host.replace(':', '_')}-{port}.json")

    def load(self) -> Dict[str, Dict[str, Any]]:
        """model uid -> {"request": the launch request, "replica": replicas wanted}."""
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or not isinstance(data.get("models"), dict):
                raise ValueError(f"unknown format {data.get('format')!r}")
            return data["models"]
        except (OSError, ValueError) as e:
            logger.error("cannot read the launched models in %s (%s); starting without them", self.path, e)
            return {}

    def save(self, models: Dict[str, Dict[str, Any]]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": FORMAT, "models": models}, indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=".launched-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)  # launch requests may carry hub tokens in their envs
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
