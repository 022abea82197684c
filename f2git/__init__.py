"""f2git: released course files as hidden, read-only git repositories for nbgitpuller."""

__version__ = "0.3.0"  # the one place the version is written: pyproject.toml reads it from here
