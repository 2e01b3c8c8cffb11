"""What the tests import (tests.support.NAME) or run (faulty_train.py); the watchdog plugin."""
