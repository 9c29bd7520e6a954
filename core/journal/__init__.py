"""Journal files (DESIGN.md §7): the durable record of the rings, written by the recorder and
read by replay, backtests and the database shipper. The layout is in journal_file.py."""
from ttquant.core.journal.journal_file import (
    FILE_SUFFIX,
    LAYOUT_VERSION,
    JournalFile,
    JournalFileError,
    JournalWriter,
    TornHeader,
    between,
    journal_directories,
    journal_files,
    read_journal,
)

__all__ = ["JournalWriter", "JournalFile", "JournalFileError", "TornHeader", "journal_files", "journal_directories",
           "read_journal", "between", "FILE_SUFFIX", "LAYOUT_VERSION"]
