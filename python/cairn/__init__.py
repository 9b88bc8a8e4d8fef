"""Cairn's Python side. For now it holds only the tests (python/tests) that check Cairn's
trainers against scikit-learn; they run `cairn-node` from CAIRN_BIN (default .build/debug)."""

__version__ = "0.1.0"
