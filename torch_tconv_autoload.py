"""Loads torch_tconv when torch is imported, through torch's `torch.backends`
entry point (see pyproject.toml), so that a program saved by torch.export
with torch_tconv's ops loads with torch.export.load in a process that never
imported torch_tconv itself. TORCH_DEVICE_BACKEND_AUTOLOAD=0 turns torch's
autoloading off; torch_tconv then has to be imported before loading.

A module of its own, outside the torch_tconv package: loading the entry
point must not import the package, whose import may fail (an unbuilt source
tree on sys.path shadows the installed copy), and torch turns any exception
raised while loading an entry point into a failed `import torch`.
"""

import warnings


def load() -> None:
    try:
        import torch_tconv  # noqa: F401
    except Exception as error:  # pragma: no cover - depends on the installation
        warnings.warn(
            f"torch_tconv is installed but could not be loaded with torch ({error}); "
            "programs that use its ops will not load until it is imported.",
            stacklevel=2,
        )
