"""The test suite: a package, so its helpers import as ``tests.support`` without the test folders (which mirror
the packages, e.g. ``tests/activeusers``) on ``sys.path`` where they would shadow the real packages."""
