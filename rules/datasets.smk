# Stage: datasets (not built yet).


def dataset_targets():
    return []
