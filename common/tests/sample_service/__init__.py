"""A tiny service built on the runtime, used by the tests to kill and stop real tasks."""
