"""What the facade classes (`AsyncDataStore`, `SyncDataStore`) are built from that is not
an operation: the settings a store shows and hands to its workers (`settings`). Sits
above compute, since a store's settings describe it for an executor's workers too.
"""
