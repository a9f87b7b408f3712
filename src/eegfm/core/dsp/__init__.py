"""Signal processing in numpy that every layer above may use: filter designs, polyphase
resampling and the checks on a signal's arguments."""
