"""The gateway: order rings in, validation, risk, the order state machine, the order journal, venue adapters."""
