# What has no subsystem of its own: loading a module for one call, the error types shared by subsystems.
