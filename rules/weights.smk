# Stage: weights (not built yet).


def weights_targets():
    return []
