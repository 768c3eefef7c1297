# Stage: exclusion (not built yet).


def exclusion_targets():
    return []
