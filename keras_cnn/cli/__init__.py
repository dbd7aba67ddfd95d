"""Command-line front ends; `scripts/<name>.py` and the console scripts call their main(argv)."""
