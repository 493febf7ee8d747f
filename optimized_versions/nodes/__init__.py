"""Worker hosts: other machines that take jobs from this server's queue (issue 10)."""
