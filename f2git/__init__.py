"""f2git: released course files as hidden, read-only git repositories for nbgitpuller."""

__version__ = "0.2.1"  # the one place the version is written: pyproject.toml reads it from here
