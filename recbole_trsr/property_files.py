"""Where the plugin's YAML properties live, and which of them apply to a model and a dataset."""

from __future__ import annotations

from pathlib import Path

from recbole_trsr.errors import UserInputError

_PACKAGE_DIR = Path(__file__).resolve().parent


def properties_dir() -> Path:
    """``properties/`` of a source checkout, or its copy inside an installed wheel."""
    for candidate in (_PACKAGE_DIR / "properties", _PACKAGE_DIR.parent / "properties"):
        if (candidate / "overall.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"recbole-trsr's properties/overall.yaml is missing next to {_PACKAGE_DIR}")


def local_properties_dir() -> Path | None:
    """``properties/`` in the working directory, where a user keeps their own datasets' and models' YAML."""
    local = Path.cwd() / "properties"
    return local if local.is_dir() and local.resolve() != properties_dir().resolve() else None


def property_files(model: str, dataset: str, preset: str | None = None) -> list[str]:
    """overall.yaml, then model/<model>.yaml and dataset/<dataset>.yaml where they exist, low to high: the
    package's own, then the working directory's ``properties/`` above them; then presets/<preset>.yaml."""
    files = []
    for root in (properties_dir(), local_properties_dir()):
        if root is not None:
            files += [root / "overall.yaml", root / "model" / f"{model}.yaml", root / "dataset" / f"{dataset}.yaml"]
    if preset:
        files.append(preset_file(preset))
    return [str(path) for path in files if path.is_file()]


def known_presets() -> list[str]:
    return sorted(path.stem for path in (properties_dir() / "presets").glob("*.yaml"))


def preset_file(name: str) -> Path:
    path = properties_dir() / "presets" / f"{name}.yaml"
    if not path.is_file():
        raise UserInputError(f"unknown preset '{name}'; presets: {', '.join(known_presets())}")
    return path


def known_datasets() -> list[str]:
    roots = [root for root in (properties_dir(), local_properties_dir()) if root is not None]
    return sorted({path.stem for root in roots for path in (root / "dataset").glob("*.yaml")})
