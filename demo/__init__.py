"""The end-to-end demo: a teacher of our own, the service, two compression jobs, a table."""
