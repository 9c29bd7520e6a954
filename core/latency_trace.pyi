import numpy as np

class LatencyTrace:
    array: np.ndarray
    def __init__(self, width: int, capacity: int) -> None: ...
    @property
    def rows(self) -> np.ndarray: ...
