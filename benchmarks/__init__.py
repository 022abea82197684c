"""`make bench`: figures on generated courses, printed as tables. Not part of the test suite."""
