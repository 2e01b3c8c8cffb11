"""Helpers the tests import (tests.support.NAME) or run (faulty_train.py), and the watchdog plugin."""
