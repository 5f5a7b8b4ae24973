"""Private implementation package; import public names from `enspace_profile`."""
