# Stage: detect (not built yet).


def detection_targets():
    return []
