"""Market data: venue feeds normalised into the tick ring, order books, the book board."""
