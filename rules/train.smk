# Stage: train (not built yet).


def training_targets():
    return []
