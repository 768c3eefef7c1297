# Stage: tables (not built yet).


def table_targets():
    return []
