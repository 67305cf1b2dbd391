"""The runtime: worker loop, executor, completer, recovery, supervisor."""
