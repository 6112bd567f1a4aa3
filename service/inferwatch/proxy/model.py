"""Which model the proxy fronts: name, version, flavor, signature and reference profile.

Read once at start-up from the settings (:mod:`inferwatch.proxy.config`):

* ``--model-dir`` (or ``--model-uri``): the MLflow model directory. Its ``MLmodel`` gives the
  flavor, the input signature and the ``model_uuid``; ``inferwatch-profile.json`` beside it is the
  reference profile, when there is one.
* ``--model-profile``: the profile file, for a proxy that cannot see the model's files (compose,
  a separate Deployment); it also overrides the one in the model directory.
* ``--model-name``, ``--model-version``: the labels; by default the profile's, else the model
  directory's name and the first 8 characters of ``model_uuid``, else ``unknown``.

A malformed profile, or one that does not fit the model's signature, stops the start with
:class:`~inferwatch.contract.profile.ProfileError`, which names the file and the problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from inferwatch.contract.metrics import MODEL_NAME, MODEL_VERSION
from inferwatch.contract.profile import (
    PROFILE_FILE_NAME,
    SIGNATURE_TYPES,
    Profile,
    ProfileError,
    SignatureColumn,
    read_profile,
)
from inferwatch.proxy.config import Settings

UNKNOWN = "unknown"
PYFUNC_FLAVOR = "python_function"


@dataclass(frozen=True)
class ModelIdentity:
    name: str = UNKNOWN
    version: str = UNKNOWN
    flavor: str = UNKNOWN
    # The column-based input signature (MLmodel's, else the profile's); None without one.
    signature: tuple[SignatureColumn, ...] | None = None
    # True when MLmodel has a tensor-based signature (no column names to check).
    tensor_signature: bool = False
    profile: Profile | None = None
    profile_path: str = ""

    @property
    def attributes(self) -> dict[str, str]:
        """The attributes every prediction and quality data point carries."""
        return {MODEL_NAME: self.name, MODEL_VERSION: self.version}

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Column order of positional inputs: the signature's, else the profile's."""
        if self.signature:
            return tuple(column.name for column in self.signature)
        return self.profile.columns if self.profile else ()


@dataclass(frozen=True)
class _MLmodel:
    flavor: str
    signature: tuple[SignatureColumn, ...] | None
    tensor_signature: bool
    uuid: str


def _read_mlmodel(directory: Path) -> _MLmodel:
    path = directory / "MLmodel"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ProfileError(str(path), "", f"cannot read MLmodel: {error}") from None
    if not isinstance(document, dict):
        raise ProfileError(str(path), "", "MLmodel is not a YAML mapping")
    flavors = [name for name in document.get("flavors") or {} if name != PYFUNC_FLAVOR]
    flavor = flavors[0] if flavors else (PYFUNC_FLAVOR if document.get("flavors") else UNKNOWN)
    signature, tensor = _signature(document.get("signature"), str(path))
    return _MLmodel(flavor, signature, tensor, str(document.get("model_uuid") or ""))


def _signature(signature: object, source: str) -> tuple[tuple[SignatureColumn, ...] | None, bool]:
    if not isinstance(signature, dict) or not signature.get("inputs"):
        return None, False
    try:
        inputs = json.loads(signature["inputs"])
    except (TypeError, ValueError):
        raise ProfileError(source, "signature.inputs", "not a JSON list of input specs") from None
    if not isinstance(inputs, list) or not all(isinstance(spec, dict) for spec in inputs):
        raise ProfileError(source, "signature.inputs", "not a JSON list of input specs")
    if any(spec.get("type") == "tensor" or "name" not in spec for spec in inputs):
        return None, True
    columns = tuple(
        SignatureColumn(str(spec["name"]), spec["type"] if spec.get("type") in SIGNATURE_TYPES else "any",
                        bool(spec.get("required", True)))
        for spec in inputs
    )
    return columns, False


def _check_fit(profile: Profile, signature: tuple[SignatureColumn, ...] | None, source: str) -> None:
    """A profile must describe this model: its features are inputs of the model's signature."""
    if signature is None:
        return
    names = {column.name for column in signature}
    if profile.signature is not None and [c.name for c in profile.signature] != [c.name for c in signature]:
        raise ProfileError(source, "signature", "the profile was built for another model: its signature lists "
                           f"{', '.join(c.name for c in profile.signature)}, the model's lists {', '.join(sorted(names))}")
    unknown = [f.name for f in profile.features if f.name not in names]
    if unknown:
        raise ProfileError(source, "features", f"not inputs of the model's signature: {', '.join(unknown)}")


def model_directory(settings: Settings) -> Path | None:
    if settings.model_dir or settings.model_uri:
        return Path(settings.model_dir or settings.model_uri)
    return None


def load_model_identity(settings: Settings) -> ModelIdentity:
    """The model the proxy fronts, from the settings; :class:`ProfileError` when it cannot be read."""
    directory = model_directory(settings)
    mlmodel = _read_mlmodel(directory) if directory is not None else None
    profile_path = settings.model_profile
    if not profile_path and directory is not None and (directory / PROFILE_FILE_NAME).is_file():
        profile_path = str(directory / PROFILE_FILE_NAME)
    profile = read_profile(profile_path) if profile_path else None
    signature = mlmodel.signature if mlmodel is not None else None
    if profile is not None:
        _check_fit(profile, signature, profile_path)
        signature = signature or profile.signature
    declared = profile.model if profile is not None else {}
    fallback_name = directory.resolve().name if directory is not None else UNKNOWN
    fallback_version = mlmodel.uuid[:8] if mlmodel is not None and mlmodel.uuid else UNKNOWN
    return ModelIdentity(
        name=settings.model_name or declared.get("name") or fallback_name,
        version=settings.model_version or declared.get("version") or fallback_version,
        flavor=(mlmodel.flavor if mlmodel is not None else declared.get("flavor")) or UNKNOWN,
        signature=signature,
        tensor_signature=mlmodel.tensor_signature if mlmodel is not None else False,
        profile=profile,
        profile_path=profile_path,
    )
