"""The named stores: for each engine of `adatastore.backends`, its async class over
`adatastore.store.AsyncDataStore` and its blocking twin over `adatastore.sync.SyncDataStore`.

They sit above the facade and the engines below it, so an engine never imports the
facade; each module is a constructor that builds its engine, and properties that show it.
"""
