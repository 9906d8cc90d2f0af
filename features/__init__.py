"""The features built on the engine, one package each: inference (the explorer's and kiosk's network
process), training, embedding (filter and image vectors, the t-SNE process) and data (datasets, downloads).

Each feature owns its handle (render side, no torch), its process (torch side) and its messages.
"""
