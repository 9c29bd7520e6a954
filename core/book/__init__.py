"""Order books kept from venue snapshots and diffs, and the book board other processes read."""
