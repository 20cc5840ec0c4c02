"""Developer tooling: local emulator, `make run`, Terraform post-processing. Not deployed."""
