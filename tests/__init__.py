"""The test suite, laid out like the package: tests/<package>/test_<module or topic>.py. Every folder is a package,
so two packages may each have a test_<module>.py of the same name. Helpers shared by several test modules sit next
to them as plain modules (paths, clirunner, crafted, tinyrun here; model/v2small), fixtures in conftest.py."""
