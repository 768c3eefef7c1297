# Stage: demo (not built yet).


def demo_targets():
    return []
