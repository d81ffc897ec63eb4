"""Policy presets and stress scenarios: where their files live and which preset keys are tagged ASSUMED."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["assumed_policy_keys", "available_presets", "available_scenarios", "preset_dir", "scenario_dir"]


def _config_subdir(name: str) -> Path:
    env = os.environ.get("LEADSIM_CONFIG_DIR")
    if env:
        return Path(env) / name
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_configs" / name
    return packaged if packaged.is_dir() else package.parent / "configs" / name


def preset_dir() -> Path:
    """Folder of policy presets: ``$LEADSIM_CONFIG_DIR/policy``, else the packaged or repository ``configs``."""
    return _config_subdir("policy")


def scenario_dir() -> Path:
    """Folder of stress scenarios (TOML overlays): ``$LEADSIM_CONFIG_DIR/scenarios``, else ``configs/scenarios``."""
    return _config_subdir("scenarios")


def available_scenarios() -> list[str]:
    """Names of the stress scenarios ``--scenario NAME`` accepts (the files in :func:`scenario_dir`)."""
    d = scenario_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def assumed_policy_keys(preset: str) -> list[str]:
    """Dotted keys of a preset file whose comment tags them ASSUMED (the file is the source)."""
    path = preset_dir() / f"{preset}.toml"
    if not path.is_file():
        return []
    keys: list[str] = []
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        code, _, comment = line.partition("#")
        code = code.strip()
        if code.startswith("[") and code.endswith("]"):
            section = code.strip("[]").strip()
        elif "=" in code and "ASSUMED" in comment:
            keys.append(f"{section}.{code.split('=')[0].strip()}")
    return keys


def available_presets() -> list[str]:
    d = preset_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []
