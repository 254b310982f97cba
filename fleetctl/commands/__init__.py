"""fleetctl's subcommands, grouped by what they act on; each module exports ``COMMANDS``."""
