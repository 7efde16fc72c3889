"""What keys are made of: canonical encoders for parameter types the key generator does
not know by itself (`encoders`, `unit_encoders`: values with units, masked arrays) and
fingerprints of the code that made an entry (`fingerprints`). The public face of this
layer is `adatastore.keygenerators`, which sits directly above it.
"""
