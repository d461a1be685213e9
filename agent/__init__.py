"""kagent: the Coder/Judge loop and the command line."""
