"""The simulated venue: real exchange formats on 127.0.0.1, fed by captures or a generator."""
