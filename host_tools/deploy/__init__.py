"""Developer deploy: copy a built application onto a running board over its REPL (mpremote)."""
