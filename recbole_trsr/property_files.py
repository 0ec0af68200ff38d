"""Where the plugin's YAML properties live, and which of them apply to a model and a dataset."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

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


def property_files(
    model: str, dataset: str, preset: str | None = None, config_files=(), takes_presets: bool = True
) -> list[str]:
    """overall.yaml, then model/<model>.yaml and dataset/<dataset>.yaml where they exist, low to high: the
    package's own, then the working directory's ``properties/`` above them; then presets/<preset>.yaml for a model
    that ``takes_presets``. Without ``preset`` (the command line's), the preset is the last one these files or
    ``config_files`` name."""
    files = []
    for root in (properties_dir(), local_properties_dir()):
        if root is not None:
            files += [root / "overall.yaml", root / "model" / f"{model}.yaml", root / "dataset" / f"{dataset}.yaml"]
    files = [str(path) for path in files if path.is_file()]
    check_config_files(files)  # a user's own, in the working directory, as --config_files are
    if preset is None:
        preset = preset_in([*files, *config_files])
    if preset:
        path = preset_file(preset)  # an unknown name is refused whichever model names it
        if takes_presets:
            files.append(str(path))
    return files


def preset_in(files: list[str]) -> str | None:
    """The ``preset`` of the last YAML file that sets one (``~`` included); a file that cannot be read has none here
    (its own check names it)."""
    preset = None
    for file in files:
        try:
            values = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(values, dict) and "preset" in values:
            preset = values["preset"]
    return None if preset is None else str(preset)


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


def check_config_files(files: list[str]) -> None:
    for file in files:
        if not os.path.isfile(file):
            raise UserInputError(f"config file '{file}' does not exist")
        try:
            with open(file, encoding="utf-8") as stream:
                content = yaml.safe_load(stream)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise UserInputError(f"config file '{file}' is not valid YAML{where}") from None
        if content is not None and not isinstance(content, dict):
            raise UserInputError(f"config file '{file}' must hold key: value pairs")
