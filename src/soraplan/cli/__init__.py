"""Command-line interface: ``soraplan <command>`` (also ``python -m soraplan``)."""
