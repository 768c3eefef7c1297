# Stage: anonymise (not built yet).


def anonymisation_targets():
    return []
