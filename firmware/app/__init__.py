# The application: composition and superloop, settings, events and their flash codes, the boot path.
