# Stage: explain (not built yet).


def explain_targets():
    return []
