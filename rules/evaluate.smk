# Stage: evaluate (not built yet).


def evaluation_targets():
    return []
